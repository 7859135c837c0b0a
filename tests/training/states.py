"""Comparison helpers for trainer states (nested dicts and lists of tensors and primitives)."""

from __future__ import annotations

from typing import Any

import torch


def assert_identical(a: Any, b: Any, where: str = "state") -> None:
    """Bit-identical nested structures: same keys, same tensors (dtype, shape, values)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {set(a) ^ set(b)} differ"
        for key in a:
            assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), f"{where}: tensor vs {type(b).__name__}"
        assert a.dtype == b.dtype and a.shape == b.shape, (
            f"{where}: {a.dtype}{tuple(a.shape)} vs {b.dtype}{tuple(b.shape)}"
        )
        assert torch.equal(a, b), f"{where}: max |diff| {(a.double() - b.double()).abs().max():.3g}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def only_tensors_and_primitives(value: Any) -> bool:
    """True when a checkpoint holds nothing but tensors, numbers, strings, None and containers."""
    if isinstance(value, dict):
        return all(
            isinstance(k, (str, int)) and only_tensors_and_primitives(v) for k, v in value.items()
        )
    if isinstance(value, (list, tuple)):
        return all(only_tensors_and_primitives(v) for v in value)
    return value is None or isinstance(value, (torch.Tensor, bool, int, float, str))


TRAINED_KEYS = ("generator", "discriminator", "ema", "opt_g", "opt_d")


def trained_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """What training changes: G, D, EMA weights and both optimiser states, and the position."""
    keys = TRAINED_KEYS + ("step", "images_seen", "epoch", "image_in_epoch")
    return {k: checkpoint[k] for k in keys}

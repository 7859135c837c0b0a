"""Where and how a network runs: device choice, mixed precision, and the noise z.

One home for the three, so the trainer, the pipeline and the service agree.
"""

from __future__ import annotations

import contextlib

import torch


class DeviceError(RuntimeError):
    """A device that was asked for by name but is not there."""


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """'auto' or None -> the CUDA GPU when present, else the CPU; 'cuda' without one is an error."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            f"device {str(device)!r} was asked for, but no CUDA GPU is visible to torch"
        )
    return device


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """amp 'auto' (bf16 on a GPU, fp32 elsewhere: bf16 is slower than fp32 on most CPUs),
    'bf16' or 'off' -> the autocast dtype, None for full precision."""
    if amp not in ("auto", "bf16", "off"):
        raise ValueError(f"amp must be auto, bf16 or off, got {amp!r}")
    if amp == "bf16" or (amp == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """torch.autocast for `dtype`, or a no-op context when dtype is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def sample_z(seeds: list[int], z_dim: int, truncation: float = 1.0) -> torch.Tensor:
    """One z per seed, drawn on the CPU, so an image never depends on its batch or device.

    truncation scales the standard normal (1.0 = none; smaller trades variety for fidelity).
    """
    if not 0.0 < truncation <= 1.0:
        raise ValueError(f"truncation must be in (0, 1], got {truncation}")
    rows = [torch.randn(z_dim, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
    return torch.stack(rows) * truncation  # (B, Z)

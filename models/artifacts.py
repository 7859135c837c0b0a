"""safetensors + config.json artifacts: `save_pretrained` / `from_pretrained`. No pickle."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

from models.config import config_from_dict, config_to_dict

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class ArtifactError(ValueError):
    """An artifact directory that cannot be loaded: missing files, wrong kind, key mismatch."""


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Write `path` through `write(file)`: into a temp file beside it, fsync'd, given the
    permissions a plain open() would (mkstemp makes it 0600), then renamed over `path`. A crash
    or a full disk at any point leaves the previous file as it was and no temp file behind."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def read_config(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise ArtifactError(
            f"{path} not found: an artifact directory holds {CONFIG_NAME} "
            f"and {WEIGHTS_NAME} (written by save_pretrained / xmc-export)"
        )
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path} must hold a JSON object")
    return data


def save_state(module: torch.nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save

    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    payload = save(state, metadata=metadata)
    atomic_write(path, lambda f: f.write(payload))


def load_state(module: torch.nn.Module, path: Path, prefix: str = "") -> None:
    """Load strictly, naming any missing or unexpected key."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise ArtifactError(f"{path} not found")
    state = load_file(str(path))
    if prefix:
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    expected = set(module.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ArtifactError(
            f"{path}: weights do not match the config: missing keys "
            f"{missing[:10]}{'...' if len(missing) > 10 else ''}, unexpected keys "
            f"{unexpected[:10]}{'...' if len(unexpected) > 10 else ''}"
        )
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:  # shape mismatches
        raise ArtifactError(f"{path}: {e}") from None


class ArtifactMixin:
    """save_pretrained / from_pretrained for a module built from one frozen config."""

    config_class: type
    artifact_kind: str

    def save_pretrained(self, directory: str | Path, extra: dict[str, Any] | None = None) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        data = {"kind": self.artifact_kind, self.artifact_kind: config_to_dict(self.config)}
        save_state(self, directory / WEIGHTS_NAME)  # type: ignore[arg-type]
        write_json_atomic(directory / CONFIG_NAME, {**data, **(extra or {})})

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu"):
        data = read_config(directory)
        if cls.artifact_kind not in data:
            raise ArtifactError(
                f"{Path(directory) / CONFIG_NAME} holds no "
                f"{cls.artifact_kind!r} config (kind: {data.get('kind')!r})"
            )
        try:
            config = config_from_dict(cls.config_class, data[cls.artifact_kind])
        except (TypeError, ValueError) as e:
            raise ArtifactError(f"{Path(directory) / CONFIG_NAME}: {e}") from None
        model = cls(config)
        load_state(model, Path(directory) / WEIGHTS_NAME)  # type: ignore[arg-type]
        return model.to(device).eval()  # type: ignore[attr-defined]

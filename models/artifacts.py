"""safetensors + config.json artifacts: `save_pretrained` / `from_pretrained`. No pickle."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO, cast

import torch

from models.config import config_from_dict, config_to_dict

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CHECKSUM_KEY = "weights_sha256"  # in config.json: the sha256 of model.safetensors, hex
# A safetensors header is a few KB per hundred tensors; anything near this is not a model's.
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_CONFIG_BYTES = 1024 * 1024
_DTYPES = {
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F64": torch.float64,
    "I64": torch.int64,
    "I32": torch.int32,
    "BOOL": torch.bool,
}

# Errors that malformed files raise from json, struct, torch and the dataclasses; each becomes
# one ArtifactError line naming the file.
MALFORMED = (TypeError, ValueError, KeyError, ZeroDivisionError, RecursionError, OverflowError)


class ArtifactError(ValueError):
    """An artifact directory that cannot be loaded: missing files, wrong kind, key mismatch."""


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
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


# long enough for an error that names every checkpoint of a run, short enough for a log line
ONE_LINE_LIMIT = 2000


def one_line(error: BaseException) -> str:
    """The cause of an error as one line, for messages to a user (the one home of this helper:
    training and the service import it from here). An error re-raised from a DataLoader worker
    carries the worker's traceback in its message: its last line, less the exception's dotted
    name, is the cause. Past ONE_LINE_LIMIT characters the text is a payload quoted in the
    message (a file's content, say), not a cause, and is cut."""
    text = str(error).strip() or type(error).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1 and "Traceback" in text:
        head, sep, rest = lines[-1].partition(": ")
        text = rest if sep and "." in head and " " not in head else lines[-1]
    text = " ".join(text.split())
    return text if len(text) <= ONE_LINE_LIMIT else text[:ONE_LINE_LIMIT] + "..."


def key_mismatch(expected: Iterable[str], found: Iterable[str]) -> str | None:
    """The text "missing keys [...], unexpected keys [...]" (ten of each at most), or None when
    the two sets of state-dict keys agree."""
    expected, found = set(expected), set(found)
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    if not missing and not unexpected:
        return None
    return (
        f"missing keys {missing[:10]}{'...' if len(missing) > 10 else ''}, unexpected keys "
        f"{unexpected[:10]}{'...' if len(unexpected) > 10 else ''}"
    )


def artifact_file(directory: str | Path, name: str) -> Path:
    """`directory / name`, refused when it is missing or a link that leaves the directory."""
    directory = Path(directory)
    path = directory / name
    if not path.is_file():
        raise ArtifactError(f"{path} not found")
    root, target = directory.resolve(), path.resolve()
    if not target.is_relative_to(root):
        raise ArtifactError(f"{path} links to {target}, outside the artifact directory {root}")
    return path


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
    path = artifact_file(directory, CONFIG_NAME)
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ArtifactError(f"{path} is larger than {MAX_CONFIG_BYTES} bytes: not a config")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, *MALFORMED) as e:
        raise ArtifactError(f"{path} is not valid JSON: {one_line(e)}") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path} must hold a JSON object")
    return data


def save_state(module: torch.nn.Module, path: Path, metadata: dict[str, str] | None = None) -> str:
    """Write the module's tensors as safetensors, atomically; returns the file's sha256 (hex)."""
    from safetensors.torch import save

    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    payload = save(state, metadata=metadata)
    atomic_write(path, lambda f: f.write(payload))
    return hashlib.sha256(payload).hexdigest()


def file_sha256(path: Path) -> str:
    """The sha256 of a file, hex, read in 1 MiB blocks (artifacts and training checkpoints)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """The safetensors JSON header alone: tensor name -> (dtype, shape). Nothing is allocated
    but the header, whose stated length is checked against the file first."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise ArtifactError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        (length,) = struct.unpack("<Q", prefix)
        if length > min(MAX_HEADER_BYTES, size - 8):
            raise ArtifactError(
                f"{path}: safetensors header of {length} bytes in a {size}-byte file "
                f"(at most {MAX_HEADER_BYTES}): a damaged or foreign file"
            )
        raw = f.read(length)
    try:
        header = json.loads(raw)
        tensors = {
            name: (str(entry["dtype"]), tuple(int(d) for d in entry["shape"]))
            for name, entry in header.items()
            if name != "__metadata__"
        }
    except (UnicodeDecodeError, AttributeError, *MALFORMED) as e:
        raise ArtifactError(f"{path}: unreadable safetensors header: {one_line(e)}") from None
    return tensors


def expected_state(module_class: type, config: Any) -> dict[str, tuple[str, tuple[int, ...]]]:
    """The (dtype, shape) of every tensor `module_class(config)` holds, from a meta-device
    build that allocates no storage."""
    names = {dtype: name for name, dtype in _DTYPES.items()}
    with torch.device("meta"):
        module = module_class(config)
    return {
        k: (names.get(v.dtype, str(v.dtype)), tuple(v.shape))
        for k, v in module.state_dict().items()
    }


def check_header(path: Path, expected: dict[str, tuple[str, tuple[int, ...]]]) -> None:
    """Refuse a weights file whose names, dtypes or shapes differ from what the config builds."""
    found = read_header(path)
    mismatch = key_mismatch(expected, found)
    if mismatch:
        raise ArtifactError(f"{path}: weights do not match the config: {mismatch}")
    for name, (dtype, shape) in expected.items():
        if found[name] != (dtype, shape):
            raise ArtifactError(
                f"{path}: {name} is {found[name][0]} {list(found[name][1])} but the config "
                f"builds {dtype} {list(shape)}"
            )


def read_state(path: Path, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, refused on a checksum mismatch or a non-finite value."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise ArtifactError(f"{path} not found")
    if sha256 is not None and file_sha256(path) != sha256.lower():
        raise ArtifactError(f"{path}: sha256 differs from {CHECKSUM_KEY} in {CONFIG_NAME}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, *MALFORMED) as e:
        raise ArtifactError(f"{path}: {one_line(e)}") from None
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ArtifactError(f"{path}: {name} holds NaN or infinite values")
    return state


def assign_state(module: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """load_state_dict, strictly, naming any missing or unexpected key and `path`."""
    mismatch = key_mismatch(module.state_dict(), state)
    if mismatch:
        raise ArtifactError(f"{path}: weights do not match the config: {mismatch}")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:  # shape mismatches
        raise ArtifactError(f"{path}: {one_line(e)}") from None


def load_state(
    module: torch.nn.Module, path: Path, prefix: str = "", sha256: str | None = None
) -> None:
    """Load strictly, naming any missing or unexpected key; refuse a checksum mismatch and
    non-finite values."""
    state = read_state(path, sha256)
    if prefix:
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    assign_state(module, state, path)


class ArtifactMixin:
    """save_pretrained / from_pretrained for a module built from one frozen config."""

    config_class: type
    artifact_kind: str
    config: Any  # the frozen config the module was built from

    def save_pretrained(self, directory: str | Path, extra: dict[str, Any] | None = None) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        data = {"kind": self.artifact_kind, self.artifact_kind: config_to_dict(self.config)}
        digest = save_state(self, directory / WEIGHTS_NAME)  # type: ignore[arg-type]
        data[CHECKSUM_KEY] = digest
        write_json_atomic(directory / CONFIG_NAME, {**data, **(extra or {})})

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu"):
        """Config checked, then the weights' header against it, then (only then) the network
        built and the weights loaded: a bad artifact never costs more than its header."""
        data = read_config(directory)
        config_path = Path(directory) / CONFIG_NAME
        if cls.artifact_kind not in data:
            raise ArtifactError(
                f"{config_path} holds no {cls.artifact_kind!r} config (kind: {data.get('kind')!r})"
            )
        checksum = data.get(CHECKSUM_KEY)
        if checksum is not None and not (isinstance(checksum, str) and len(checksum) == 64):
            raise ArtifactError(f"{config_path}: {CHECKSUM_KEY} must be 64 hex digits")
        try:
            config = config_from_dict(cls.config_class, data[cls.artifact_kind])
            expected = expected_state(cls, config)
        except MALFORMED as e:
            raise ArtifactError(f"{config_path}: {one_line(e)}") from None
        weights = artifact_file(directory, WEIGHTS_NAME)
        check_header(weights, expected)
        state = read_state(weights, sha256=checksum)
        model = cast(Any, cls)(config)  # the network class this mixin is part of
        assign_state(model, state, weights)  # type: ignore[arg-type]
        return model.to(device).eval()  # type: ignore[attr-defined]


def save_artifact(
    directory: str | Path,
    generator: torch.nn.Module,
    text_config: Any,
    model_id: str,
    extra: dict | None = None,
) -> Path:
    """Write a pipeline artifact (`XMCGANPipeline.from_pretrained` reads it): the generator's
    weights and config, the text encoder's config (the BERT by reference), the weights' sha256
    (verified on load) and the model id."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    digest = save_state(generator, directory / WEIGHTS_NAME)
    write_json_atomic(
        directory / CONFIG_NAME,
        {
            "kind": "pipeline",
            "model_id": model_id,
            "generator": config_to_dict(generator.config),
            "text_encoder": config_to_dict(text_config),
            CHECKSUM_KEY: digest,
            **(extra or {}),
        },
    )
    return directory


def read_pipeline_config(directory: Path) -> tuple[Any, Any, str]:
    """A pipeline artifact's (GeneratorConfig, TextEncoderConfig, model id), checked against
    each other before anything is built."""
    from models.config import GeneratorConfig, TextEncoderConfig

    data = read_config(directory)
    config_path = directory / CONFIG_NAME
    if "generator" not in data:
        raise ArtifactError(f"{config_path} holds no generator config")
    try:
        text_config = config_from_dict(TextEncoderConfig, data.get("text_encoder", {}))
        generator_config = config_from_dict(GeneratorConfig, data["generator"])
    except MALFORMED as e:
        raise ArtifactError(f"{config_path}: {one_line(e)}") from None
    dims = (generator_config.word_dim, generator_config.sentence_dim)
    if dims != (text_config.hidden_size, text_config.hidden_size):
        raise ArtifactError(
            f"{config_path}: the generator expects {dims[0]}-d words and {dims[1]}-d "
            f"sentences but the text encoder gives {text_config.hidden_size}-d features"
        )
    model_id = data.get("model_id", directory.name)
    if not isinstance(model_id, str) or not 0 < len(model_id) <= 200:
        raise ArtifactError(f"{config_path}: model_id must be a string of 1 to 200 characters")
    return generator_config, text_config, model_id

"""Text features computed once: the BERT text encoder is frozen (official recipe), so a
caption's word features, mask and sentence embedding never change during training.

Two caches with the encoder's own interface, `encode(captions, device) -> TextFeatures`:

- `CachedTextEncoder`: in memory, for small data such as the shapes benchmark (about 18.8k
  distinct captions among 100k). Each distinct caption is encoded once, on first sight, and
  its features are kept on the CPU.
- `DiskTextCache`: memory-mapped `.npy` files for large data such as COCO, written once by
  `build_text_cache` (with a progress bar). The directory records the encoder's identity
  (`name_or_path`, a SHA-256 of its weights, pooling, hidden size) and `max_length`; opening
  it with another encoder is refused with `TextCacheMismatchError`.

An unknown caption is encoded on the fly by both caches (and counted in `misses`), since a
trainer also encodes captions from outside its training list (the sample grid, and the
left/right-swapped caption of a flipped image); `DiskTextCache(..., strict=True)` raises
`KeyError` instead, to prove that a run never touches BERT.

Features are float32 copies of what the encoder returns, so a cached caption equals its
on-the-fly encoding up to the GEMM's batch-dependent rounding (about 1e-7).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.text_encoder import TextEncoder, TextFeatures

CACHE_FORMAT = "xmc-text-cache v1"
_ARRAYS = ("words", "mask", "sentence", "input_ids")


class TextCacheMismatchError(ValueError):
    """A disk cache written by another text encoder (or max_length) than the one in use."""


def encoder_identity(encoder: TextEncoder) -> dict[str, Any]:
    """What the features depend on: the BERT weights, the pooling and max_length.

    The weights are hashed (SHA-256 over every tensor's name, dtype, shape and bytes), so a
    fine-tuned copy saved under the same name is told apart from the original.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(encoder.bert.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    c = encoder.config
    return {
        "name_or_path": c.name_or_path,
        "weights_sha256": digest.hexdigest(),
        "pooling": c.pooling,
        "hidden_size": c.hidden_size,
        "max_length": c.max_length,
        "vocab_size": len(encoder.tokenizer),
    }


def _describe(identity: dict[str, Any]) -> str:
    return (
        f"{identity['name_or_path']!r} (weights {identity['weights_sha256'][:12]}, "
        f"pooling {identity['pooling']}, max_length {identity['max_length']})"
    )


def unique(captions: Iterable[str]) -> list[str]:
    """The distinct captions in order of first appearance."""
    return list(dict.fromkeys(captions))


class CachedTextEncoder:
    """In-memory cache around a frozen `TextEncoder`: each distinct caption is encoded once.

    `hits` and `misses` count captions (not batches) served from the cache and encoded.
    """

    def __init__(self, encoder: TextEncoder) -> None:
        # the encoder is frozen (the official recipe never trains BERT), so features never go stale
        self.encoder = encoder
        self.config = encoder.config
        self.hits = 0
        self.misses = 0
        # caption -> (words (T, D), mask (T,), sentence (D,), tokens), all on the CPU
        self._store: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]] = {}

    def __len__(self) -> int:
        return len(self._store)

    def warm(self, captions: Iterable[str], batch_size: int = 256) -> None:
        """Encode every caption not yet cached (e.g. a whole training split, up front)."""
        todo = [c for c in unique(captions) if c not in self._store]
        for start in range(0, len(todo), batch_size):
            self._add(todo[start : start + batch_size])

    def _add(self, captions: list[str]) -> None:
        features = self.encoder.encode(captions).to("cpu")
        for i, caption in enumerate(captions):
            self._store[caption] = (
                features.words[i].clone(),
                features.mask[i].clone(),
                features.sentence[i].clone(),
                features.tokens[i],
            )

    def encode(
        self, captions: Sequence[str], device: torch.device | str | None = None
    ) -> TextFeatures:
        """The encoder's features for `captions` (B, ...), on `device` (default: CPU)."""
        if isinstance(captions, str) or not all(isinstance(c, str) for c in captions):
            raise TypeError("captions must be a list of strings")
        missing = [c for c in unique(captions) if c not in self._store]
        self.misses += len(missing)  # a caption repeated inside one batch is encoded once
        self.hits += len(captions) - len(missing)
        if missing:
            self._add(missing)
        rows = [self._store[c] for c in captions]
        features = TextFeatures(
            torch.stack([r[0] for r in rows]),
            torch.stack([r[1] for r in rows]),
            torch.stack([r[2] for r in rows]),
            [r[3] for r in rows],
        )
        return features.to(device) if device is not None else features


@torch.no_grad()
def _encode_rows(encoder: TextEncoder, chunk: list[str], start: int, arrays: dict) -> None:
    """Encode `chunk` into rows start.. of the open memory maps."""
    batch = encoder.tokenize(chunk)
    device = next(encoder.bert.parameters()).device
    ids, attn = batch["input_ids"].to(device), batch["attention_mask"].to(device)
    words, mask, sentence = encoder(ids, attn)  # (B, T, D), (B, T), (B, D)
    part = slice(start, start + len(chunk))
    arrays["words"][part] = words.cpu().numpy()
    arrays["mask"][part] = mask.cpu().numpy()
    arrays["sentence"][part] = sentence.cpu().numpy()
    arrays["input_ids"][part] = ids.cpu().numpy()


def build_text_cache(
    encoder: TextEncoder,
    captions: Iterable[str],
    directory: str | Path,
    batch_size: int = 256,
    progress: bool = True,
) -> Path:
    """Encode every distinct caption once into `directory` (memory-mappable .npy files).

    Writes words (N, T, D) float32, mask (N, T) bool, sentence (N, D) float32, input_ids
    (N, T) int32, captions.json (row order) and meta.json (format, encoder identity). The
    files are written into a temporary sibling and renamed, so a cut-off build leaves nothing
    that looks finished. An existing cache is replaced.
    """
    from tqdm import tqdm

    directory = Path(directory)
    rows = unique(captions)
    if not rows:
        raise ValueError("no captions to cache")
    identity = encoder_identity(encoder)
    t, d = encoder.config.max_length, encoder.config.hidden_size
    tmp = directory.with_name(directory.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shapes = {
        "words": ((len(rows), t, d), np.float32),
        "mask": ((len(rows), t), np.bool_),
        "sentence": ((len(rows), d), np.float32),
        "input_ids": ((len(rows), t), np.int32),
    }
    arrays = {
        name: np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)
        for name, (shape, dtype) in shapes.items()
    }
    starts = range(0, len(rows), batch_size)
    for start in tqdm(starts, desc="text cache", unit="batch", disable=not progress):
        _encode_rows(encoder, rows[start : start + batch_size], start, arrays)
    for array in arrays.values():
        array.flush()
    del arrays
    (tmp / "captions.json").write_text(json.dumps(rows, ensure_ascii=False))
    (tmp / "meta.json").write_text(
        json.dumps({"format": CACHE_FORMAT, "count": len(rows), "encoder": identity}, indent=2)
        + "\n"
    )
    if directory.exists():
        shutil.rmtree(directory)
    tmp.rename(directory)
    return directory


class DiskTextCache:
    """Read a `build_text_cache` directory with the encoder's `encode` interface.

    `encoder` must be the one that built the cache (checked against meta.json); it tokenises
    nothing for a hit, only names the tokens, and encodes a miss unless `strict`.
    """

    def __init__(self, directory: str | Path, encoder: TextEncoder, strict: bool = False) -> None:
        self.directory = Path(directory)
        meta_path = self.directory / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(
                f"{self.directory} is not a text cache (no meta.json); "
                "build one with build_text_cache"
            )
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != CACHE_FORMAT:
            raise TextCacheMismatchError(
                f"{self.directory}: format {meta.get('format')!r}, "
                f"expected {CACHE_FORMAT!r}; rebuild it"
            )
        identity = encoder_identity(encoder)
        if meta["encoder"] != identity:
            raise TextCacheMismatchError(
                f"text cache {self.directory} was built by {_describe(meta['encoder'])}, not by "
                f"the encoder in use {_describe(identity)}; rebuild it or pick another directory"
            )
        self.encoder = encoder
        self.config = encoder.config
        self.strict = strict
        self.hits = 0
        self.misses = 0
        self.arrays = {
            name: np.load(self.directory / f"{name}.npy", mmap_mode="r") for name in _ARRAYS
        }
        captions = json.loads((self.directory / "captions.json").read_text())
        self.index = {caption: row for row, caption in enumerate(captions)}

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, caption: str) -> bool:
        return caption in self.index

    def _rows(self, rows: list[int]) -> TextFeatures:
        order = np.asarray(rows)
        ids = torch.from_numpy(self.arrays["input_ids"][order].astype(np.int64))  # (B, T)
        mask = torch.from_numpy(np.ascontiguousarray(self.arrays["mask"][order]))  # (B, T)
        tokens = [
            self.encoder.tokenizer.convert_ids_to_tokens(row[m].tolist())
            for row, m in zip(ids, mask, strict=True)
        ]
        return TextFeatures(
            torch.from_numpy(np.ascontiguousarray(self.arrays["words"][order])),
            mask,
            torch.from_numpy(np.ascontiguousarray(self.arrays["sentence"][order])),
            tokens,
        )

    def encode(
        self, captions: Sequence[str], device: torch.device | str | None = None
    ) -> TextFeatures:
        """Cached features for `captions`; misses are encoded (or raise KeyError if strict)."""
        if isinstance(captions, str) or not all(isinstance(c, str) for c in captions):
            raise TypeError("captions must be a list of strings")
        missing = [i for i, c in enumerate(captions) if c not in self.index]
        if missing and self.strict:
            raise KeyError(
                f"{len(missing)} caption(s) not in text cache {self.directory}, "
                f"e.g. {captions[missing[0]]!r}"
            )
        self.hits += len(captions) - len(missing)
        self.misses += len(missing)
        if not missing:
            features = self._rows([self.index[c] for c in captions])
        else:
            fresh = self.encoder.encode([captions[i] for i in missing]).to("cpu")
            parts, where = [], {i: k for k, i in enumerate(missing)}
            for i, caption in enumerate(captions):
                parts.append(
                    fresh.select([where[i]]) if i in where else self._rows([self.index[caption]])
                )
            features = TextFeatures.cat(parts)
        return features.to(device) if device is not None else features

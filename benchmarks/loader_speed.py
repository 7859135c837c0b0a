"""Images/s the training loader delivers at 256 px: full-size JPEGs in the COCO layout
against the same images prepared as tar shards by `xmc-prepare`. One run, same workers.

    python -m benchmarks.loader_speed [--images 2000] [--workers 2]

Synthetic 640x480 JPEGs (COCO's typical size; smooth colour fields plus noise, so they
compress like photographs rather than like pure noise) are written to a temporary COCO
layout, read through `CocoCaptions`, prepared once (timed separately, not part of the
loader figure) and read through `ShardCaptions`. Both are read in each of three forms: uint8
items as the trainer asks for them (a quarter of the bytes between processes; the trainer
makes them float on its device, after the transfer, `training.data.stream.device_images`),
the same made float here on the CPU (a CPU trainer's cost), and float items from the
workers. The first batch of each run is left out (worker start-up). It ends with what one
GPU at the official recipe's step rate needs, from an ASSUMED step time that you pass with
--assumed-step-seconds.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import DataLoader

# Official coco recipe (configs/coco_xmc.py as the issue reads it): 56 images per D update
# (global), 2 D updates per G step, so 112 real images per G step.
IMAGES_PER_D_UPDATE = 56
D_STEPS_PER_G_STEP = 2


def synthetic_photo(rng: np.random.Generator, width: int = 640, height: int = 480) -> Image.Image:
    """Bilinearly upsampled 8x6 colour field + mild noise: JPEG-compresses like a photo."""
    coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR))
    noise = rng.normal(0, 12, field.shape)
    return Image.fromarray(np.clip(field + noise, 0, 255).astype(np.uint8))


def write_coco(root: Path, count: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    split = root / "train2014"
    split.mkdir(parents=True)
    images, annotations = [], []
    for n in range(1, count + 1):
        name = f"COCO_train2014_{n:012d}.jpg"
        synthetic_photo(rng).save(split / name, quality=90)
        images.append({"id": n, "file_name": name})
        annotations.append({"id": n, "image_id": n, "caption": f"a synthetic photo {n}"})
    (root / "annotations").mkdir()
    payload = {"images": images, "annotations": annotations}
    (root / "annotations" / "captions_train2014.json").write_text(json.dumps(payload))
    return root


def images_per_second(
    dataset, workers: int, batch_size: int, shuffle: bool, convert: bool
) -> float:
    """(B, 3, 256, 256) batches delivered to this process, per second: as they come out of the
    DataLoader, or (`convert`) made float in [0, 1] here, on the CPU, by `float_images`."""
    from training.data.base import float_images

    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=workers, shuffle=shuffle, drop_last=True
    )
    iterator = iter(loader)
    next(iterator)  # worker start-up and the first batch: not timed
    start, count = time.perf_counter(), 0
    for batch in iterator:
        images = float_images(batch)["image"] if convert else batch["image"]
        assert images.shape[1:] == (3, 256, 256)
        count += len(images)
    return count / (time.perf_counter() - start)


# (item pixels, converted to float in this process): the three ways a batch can arrive
FORMS = {
    "uint8": ("uint8", False),  # the trainer's: uint8 items, made float on its device
    "uint8+cpu": ("uint8", True),  # a CPU trainer's: the same, made float on the CPU
    "float": ("float", False),  # float items from the workers (before this benchmark's change)
}


def run(images: int, workers: int, batch_size: int, step_seconds: float) -> dict:
    from training.data.coco import CocoCaptions
    from training.data.prepare import EncodeOptions, prepare_shards
    from training.data.shards import ShardCaptions

    rates: dict[str, dict[str, float]] = {"coco": {}, "shards": {}}
    with tempfile.TemporaryDirectory() as folder:
        root = write_coco(Path(folder) / "coco", images)
        start = time.perf_counter()
        shards = Path(folder) / "shards"
        prepare_shards(
            root,
            shards,
            EncodeOptions(256),
            shard_size=max(1, images // (4 * workers)),
            workers=workers,
            progress=False,
        )
        prepare_seconds = time.perf_counter() - start
        for form, (pixels, convert) in FORMS.items():
            coco = CocoCaptions(root, "train2014", 256, pixels=pixels)
            rates["coco"][form] = images_per_second(coco, workers, batch_size, True, convert)
            prepared = ShardCaptions(shards, 256, shuffle_buffer=100, pixels=pixels)
            rates["shards"][form] = images_per_second(prepared, workers, batch_size, False, convert)
    return {
        "rates": rates,
        "ratios": {form: rates["shards"][form] / rates["coco"][form] for form in FORMS},
        "prepare_seconds": prepare_seconds,
        "needed_images_per_s": IMAGES_PER_D_UPDATE * D_STEPS_PER_G_STEP / step_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--assumed-step-seconds",
        type=float,
        default=0.5,
        help="ASSUMED seconds per G step (2 D updates of 56) on one GPU: not measured here",
    )
    args = parser.parse_args()
    r = run(args.images, args.workers, args.batch_size, args.assumed_step_seconds)
    rates, ratios, needed = r["rates"], r["ratios"], r["needed_images_per_s"]
    print(
        f"{args.images} synthetic 640x480 JPEGs -> 256 px, {args.workers} workers, batch "
        f"{args.batch_size}; images/s delivered"
    )
    print(f"{'batches as':<44} {'COCO JPEGs':>11} {'shards':>9} {'ratio':>7}")
    labels = {
        "uint8": "uint8, made float on the device (trainer)",
        "uint8+cpu": "uint8, made float here on the CPU",
        "float": "float items from the workers",
    }
    for form, label in labels.items():
        print(
            f"{label:<44} {rates['coco'][form]:11.1f} {rates['shards'][form]:9.1f} "
            f"{ratios[form]:6.2f}x"
        )
    print(f"(xmc-prepare took {r['prepare_seconds']:.1f} s for these images, once)")
    coco, prepared = rates["coco"]["uint8"], rates["shards"]["uint8"]
    print(
        f"ASSUMPTION: {args.assumed_step_seconds} s per G step at the official recipe "
        f"({IMAGES_PER_D_UPDATE} images per D update x {D_STEPS_PER_G_STEP}) -> one GPU "
        f"needs {needed:.0f} images/s: {needed / (coco / args.workers):.1f} loader processes "
        f"like these from JPEGs, {needed / (prepared / args.workers):.1f} from shards"
    )


if __name__ == "__main__":
    main()

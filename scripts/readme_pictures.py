"""Draw the README's pictures from the bundled model: its own example captions, samples for
held-out captions, and the word-attention maps of one caption.

    python scripts/readme_pictures.py DATA_ROOT [--out docs/images]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from models import XMCGANPipeline
from models.images import labelled_rows
from training.data.coco import load_captions_file
from training.shapes.headline import README_CAPTIONS

SCALE = 4  # 32 px images are shown at 128 px


def upscale(image: Image.Image, scale: int = SCALE) -> Image.Image:
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


def samples_grid(pipe: XMCGANPipeline, captions: list[str], per_caption: int) -> Image.Image:
    rows = [
        (caption, pipe([caption], seed=1000 * row, num_images_per_caption=per_caption))
        for row, caption in enumerate(captions)
    ]
    return labelled_rows(rows, scale=SCALE)


def attention_strip(pipe: XMCGANPipeline, caption: str, seed: int) -> Image.Image:
    image, tokens, maps = pipe.word_attention(caption, seed=seed)
    side = pipe.resolution * SCALE
    words = [(t, m) for t, m in zip(tokens, maps, strict=True) if t not in ("[CLS]", "[SEP]")]
    strip = Image.new("RGB", ((len(words) + 1) * (side + 4), side + 20), "white")
    draw = ImageDraw.Draw(strip)
    strip.paste(upscale(image), (0, 0))
    draw.text((4, side + 4), "image", fill="black")
    for i, (token, attention) in enumerate(words, start=1):
        heat = attention / attention.max().clamp_min(1e-8)  # (16, 16) in [0, 1]
        pixels = (heat * 255).round().to(torch.uint8).numpy()
        overlay = Image.fromarray(pixels, "L").resize((side, side), Image.Resampling.NEAREST)
        base = upscale(image).convert("L").convert("RGB")
        red = Image.merge(
            "RGB", (overlay, Image.new("L", overlay.size, 0), Image.new("L", overlay.size, 0))
        )
        strip.paste(Image.blend(base, red, 0.6), (i * (side + 4), 0))
        draw.text((i * (side + 4) + 4, side + 4), token, fill="black")
    return strip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path, help="shapes benchmark root (for held-out captions)")
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--rows", type=int, default=6)
    parser.add_argument("--per-caption", type=int, default=6)
    args = parser.parse_args()
    pipe = XMCGANPipeline.from_pretrained(device="cpu")
    records = load_captions_file(
        args.data / "annotations" / "captions_test_heldout.json", args.data / "test_heldout"
    )
    captions = [r.captions[0] for r in records[: args.rows]]
    args.out.mkdir(parents=True, exist_ok=True)
    readme = samples_grid(pipe, list(README_CAPTIONS), per_caption=8)
    readme.save(args.out / "readme_captions.png")
    samples_grid(pipe, captions, args.per_caption).save(args.out / "heldout_samples.png")
    attention_strip(pipe, "a large red circle left of a small blue square", seed=3).save(
        args.out / "word_attention.png"
    )
    print(f"wrote readme_captions.png, heldout_samples.png and word_attention.png in {args.out}")


if __name__ == "__main__":
    main()

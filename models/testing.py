"""Helpers for tests of this project and of projects built on it: a tiny loadable artifact."""

from __future__ import annotations

from pathlib import Path

import torch

from models.generator import Generator
from models.pipeline import XMCGANPipeline
from models.text_encoder import TextEncoder


def make_tiny_artifact(directory: str | Path, seed: int = 0) -> Path:
    """Write an artifact with the `tiny` preset (32 px, random weights, real MiniLM encoder)."""
    from models.config import get_preset

    torch.manual_seed(seed)
    preset = get_preset("tiny")
    pipe = XMCGANPipeline(
        Generator(preset.generator),
        TextEncoder.from_config(preset.text_encoder),
        device="cpu",
        model_id="xmc-tiny",
    )
    pipe.save_pretrained(directory)
    return Path(directory)

"""Caption -> image inference: a text encoder and an (EMA) generator loaded from one artifact.

An artifact directory holds `config.json` (generator config, text-encoder config, model id) and
`model.safetensors` (generator weights). `xmc-export` writes it from a training run; the bundled
default lives in `models/bundled/`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from models.artifacts import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    ArtifactError,
    read_config,
    save_state,
    write_json_atomic,
)
from models.config import GeneratorConfig, TextEncoderConfig, config_from_dict, config_to_dict
from models.generator import Generator
from models.images import to_pil
from models.runtime import autocast, autocast_dtype, pick_device, sample_z
from models.text_encoder import TextEncoder, TextFeatures

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled" / "default"


def save_artifact(
    directory: str | Path,
    generator: Generator,
    text_config: TextEncoderConfig,
    model_id: str,
    extra: dict | None = None,
) -> Path:
    """Write an inference artifact: generator weights + configs; the BERT by reference."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_state(generator, directory / WEIGHTS_NAME)
    write_json_atomic(
        directory / CONFIG_NAME,
        {
            "kind": "pipeline",
            "model_id": model_id,
            "generator": config_to_dict(generator.config),
            "text_encoder": config_to_dict(text_config),
            **(extra or {}),
        },
    )
    return directory


class XMCGANPipeline:
    def __init__(
        self,
        generator: Generator,
        text_encoder: TextEncoder,
        device: str | torch.device | None = None,
        model_id: str = "xmc-gan",
    ) -> None:
        g, t = generator.config, text_encoder.config
        if (g.word_dim, g.sentence_dim) != (t.hidden_size, t.hidden_size):
            raise ArtifactError(
                f"the generator expects {g.word_dim}-d words but the text encoder "
                f"{t.name_or_path!r} gives {t.hidden_size}-d features"
            )
        self.device = pick_device(device)
        self.generator = generator.to(self.device).eval()
        self.text_encoder = text_encoder.to(self.device).eval()
        self.model_id = model_id
        # bf16 on GPU, float32 on CPU (the CPU has no fast bf16 convolutions)
        self.autocast_dtype = autocast_dtype("auto", self.device)

    @property
    def resolution(self) -> int:
        return self.generator.config.resolution

    @classmethod
    def from_pretrained(
        cls, path: str | Path | None = None, device: str | torch.device | None = None
    ) -> XMCGANPipeline:
        """Load an artifact directory; with no path, the bundled default model."""
        directory = Path(path) if path is not None else BUNDLED_DIR
        if path is None and not (directory / WEIGHTS_NAME).is_file():
            raise ArtifactError(
                f"the bundled default model is missing from {directory}; "
                "reinstall the package or pass an artifact directory"
            )
        data = read_config(directory)
        if "generator" not in data:
            raise ArtifactError(f"{directory / CONFIG_NAME} holds no generator config")
        try:
            text_config = config_from_dict(TextEncoderConfig, data.get("text_encoder", {}))
        except (TypeError, ValueError) as e:
            raise ArtifactError(f"{directory / CONFIG_NAME}: {e}") from None
        generator = Generator.from_pretrained(directory)
        text_encoder = TextEncoder.from_config(text_config)
        return cls(generator, text_encoder, device, data.get("model_id", directory.name))

    def save_pretrained(self, directory: str | Path, extra: dict | None = None) -> None:
        save_artifact(directory, self.generator, self.text_encoder.config, self.model_id, extra)

    def _autocast(self):
        return autocast(self.device, self.autocast_dtype)

    def encode_text(self, captions: list[str]) -> TextFeatures:
        with self._autocast():
            return self.text_encoder.encode(captions, self.device)

    @torch.no_grad()
    def generate(
        self,
        features: TextFeatures,
        seeds: list[int],
        truncation: float = 1.0,
        return_attention: bool = False,
    ):
        """One image per row of `features`: (B, 3, R, R) float32 in [0, 1] on the CPU.

        With return_attention, also the 16x16 word attention (B, T, 16, 16) on the CPU.
        """
        if len(seeds) != len(features):
            raise ValueError(f"got {len(seeds)} seeds for {len(features)} captions")
        config: GeneratorConfig = self.generator.config
        z = sample_z(seeds, config.z_dim, truncation).to(self.device)
        f = features.to(self.device)
        with self._autocast():
            out = self.generator(z, f.sentence, f.words, f.mask, return_attention=return_attention)
        if return_attention:
            return out[0].float().cpu(), out[1].float().cpu()
        return out.float().cpu()

    def word_attention(
        self, caption: str, seed: int = 0, truncation: float = 1.0
    ) -> tuple[Image.Image, list[str], torch.Tensor]:
        """The image for one caption, its tokens, and each token's 16x16 attention map."""
        features = self.encode_text([caption])
        images, attention = self.generate(features, [seed], truncation, return_attention=True)
        tokens = features.tokens[0]
        return self.to_pil(images)[0], tokens, attention[0, : len(tokens)]

    def __call__(
        self,
        captions: list[str] | str,
        seed: int | None = None,
        num_images_per_caption: int = 1,
        truncation: float = 1.0,
    ) -> list[Image.Image]:
        """Images for captions, caption-major: [c0 i0, c0 i1, ..., c1 i0, ...].

        Image k of caption c uses seed `seed + c * num_images_per_caption + k`; with seed None
        the base seed is drawn at random.
        """
        captions = [captions] if isinstance(captions, str) else list(captions)
        if num_images_per_caption < 1:
            raise ValueError("num_images_per_caption must be >= 1")
        base = int(torch.randint(0, 2**31 - 1, ())) if seed is None else int(seed)
        n = num_images_per_caption
        features = self.encode_text(captions)
        rows = [i for i in range(len(captions)) for _ in range(n)]
        seeds = [base + i for i in range(len(rows))]
        return self.to_pil(self.generate(features.select(rows), seeds, truncation))

    to_pil = staticmethod(to_pil)  # (B, 3, H, W) in [0, 1] -> RGB PIL images

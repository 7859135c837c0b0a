"""Caption -> image inference: a text encoder and an (EMA) generator loaded from one artifact.

An artifact directory holds `config.json` (generator config, text-encoder config, model id) and
`model.safetensors` (generator weights). `xmc-export` writes it from a training run
(`models.artifacts.save_artifact`); the bundled default lives in `models/bundled/`. What the
pipeline runs on: `models/folding.py` (the folded inference copy of G), `models/onnx_backend.py`
(ONNX Runtime or PyTorch), `models/interpolation.py` (walks between two captions and seeds).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from PIL import Image

from models.artifacts import (
    WEIGHTS_NAME,
    ArtifactError,
    read_pipeline_config,
    save_artifact,
)
from models.config import GeneratorConfig
from models.folding import fold_norms
from models.generator import Generator, GeneratorOutput
from models.hub import resolve_model_dir
from models.images import to_pil
from models.interpolation import interpolate_features, slerp
from models.onnx_backend import OnnxGenerator, resolve_backend
from models.runtime import autocast, autocast_dtype, pick_device, sample_z
from models.text_encoder import TextEncoder, TextFeatures

__all__ = ["BUNDLED_DIR", "XMCGANPipeline", "save_artifact"]

logger = logging.getLogger("models.pipeline")

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled" / "default"


class XMCGANPipeline:
    def __init__(
        self,
        generator: Generator,
        text_encoder: TextEncoder,
        device: str | torch.device | None = None,
        model_id: str = "xmc-gan",
        backend: str = "auto",
    ) -> None:
        g, t = generator.config, text_encoder.config
        if (g.word_dim, g.sentence_dim) != (t.hidden_size, t.hidden_size):
            raise ArtifactError(
                f"the generator expects {g.word_dim}-d words but the text encoder "
                f"{t.name_or_path!r} gives {t.hidden_size}-d features"
            )
        self.device = pick_device(device)
        self.generator = generator.to(self.device).eval()
        # Inference runs a copy with the conditional BNs folded, channels_last on the CPU
        # (measured 1.26x the plain generator at batch 32, docs/service.md); `generator` stays
        # the trained module, for saving and inspection.
        self.inference_generator = fold_norms(self.generator)
        if self.device.type == "cpu":
            # Module.to takes memory_format (torch's stubs list only device and dtype)
            self.inference_generator.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.text_encoder = text_encoder.to(self.device).eval()
        self.model_id = model_id
        # bf16 on GPU, float32 on CPU (the CPU has no fast bf16 convolutions)
        self.autocast_dtype = autocast_dtype("auto", self.device)
        self.backend = resolve_backend(backend, self.device)
        self._backend_asked = backend
        self._onnx: OnnxGenerator | None = None  # exported on the first images-only call

    @property
    def resolution(self) -> int:
        return self.generator.config.resolution

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path | None = None,
        device: str | torch.device | None = None,
        backend: str = "auto",
    ) -> XMCGANPipeline:
        """Load an artifact: a local directory, a Hugging Face Hub repo id (downloaded once into
        the Hub cache; offline from that cache with HF_HUB_OFFLINE=1), or with no path the
        bundled default model. `backend`: see `resolve_backend`."""
        directory = resolve_model_dir(path) if path is not None else BUNDLED_DIR
        if path is None and not (directory / WEIGHTS_NAME).is_file():
            raise ArtifactError(
                f"the bundled default model is missing from {directory}; "
                "reinstall the package or pass an artifact directory"
            )
        generator_config, text_config, model_id = read_pipeline_config(directory)
        generator = Generator.from_pretrained(directory)
        text_encoder = TextEncoder.from_config(text_config)
        return cls(generator, text_encoder, device, model_id, backend)

    @classmethod
    def from_preset(
        cls,
        preset: str,
        device: str | torch.device | None = None,
        seed: int = 0,
        backend: str = "auto",
    ) -> XMCGANPipeline:
        """Random weights of a preset (speed benchmarks, tests): nothing to load but the BERT."""
        from models.config import get_preset

        torch.manual_seed(seed)
        chosen = get_preset(preset)
        text_encoder = TextEncoder.from_config(chosen.text_encoder)
        name = f"xmc-{preset}-random"
        return cls(Generator(chosen.generator), text_encoder, device, name, backend)

    def generator_flops(self, batch: int = 8) -> float:
        """FLOPs per image of one inference forward (torch.utils.flop_counter)."""
        from torch.utils.flop_counter import FlopCounterMode

        features = self.encode_text(["a red circle"] * batch)
        z = sample_z(list(range(batch)), self.generator.config.z_dim)
        f = features.to(self.device)
        # PyTorch's forward whatever the backend: the counter sees its operators only
        with FlopCounterMode(display=False) as counter, torch.inference_mode(), self._autocast():
            self.inference_generator(z.to(self.device), f.sentence, f.words, f.mask)
        return counter.get_total_flops() / batch

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
        z = sample_z(seeds, config.z_dim, truncation)
        return self._run(z, features, return_attention)

    def _run(self, z: torch.Tensor, features: TextFeatures, return_attention: bool = False):
        f = features.to(self.device)
        if self.backend == "onnxruntime" and not return_attention:
            inputs = (z, f.sentence, f.words, f.mask)
            try:
                return self._onnx_generator(inputs)(*inputs)
            except Exception as error:  # export or session: "auto" goes on with PyTorch
                if self._backend_asked != "auto":
                    raise
                logger.warning("ONNX Runtime unusable (%s); the generator runs on PyTorch", error)
                self.backend = "torch"
        with self._autocast():
            out = self.inference_generator(
                z.to(self.device), f.sentence, f.words, f.mask, return_attention=return_attention
            )
        if isinstance(out, GeneratorOutput):
            return GeneratorOutput(out.images.float().cpu(), out.attention.float().cpu())
        return out.float().cpu()

    def _onnx_generator(self, example: tuple[torch.Tensor, ...]) -> OnnxGenerator:
        """The ONNX Runtime graph of the inference generator at torch's current CPU thread
        count (built again if that changed), checked against PyTorch on its first inputs."""
        threads = torch.get_num_threads()
        if self._onnx is None or self._onnx.threads != threads:
            onnx = OnnxGenerator(self.inference_generator, example, threads)
            onnx.check(self.inference_generator, example)
            self._onnx = onnx
        return self._onnx

    @torch.no_grad()
    def interpolate(
        self,
        features: TextFeatures,
        seeds: tuple[int, int],
        frames: int,
        truncation: float = 1.0,
    ) -> torch.Tensor:
        """`frames` images walking from (caption 0, seeds[0]) to (caption 1, seeds[1]):
        text features lerped, z slerped. `features` holds the two captions (2 rows; the same
        caption twice walks the seed alone). Returns (frames, 3, R, R) in [0, 1] on the CPU;
        the first and last frames are the two endpoints' own images."""
        if len(features) != 2 or frames < 2:
            raise ValueError("interpolate needs two rows of features and at least two frames")
        t = torch.linspace(0.0, 1.0, frames)
        z_a, z_b = sample_z(list(seeds), self.generator.config.z_dim, truncation)
        return self._run(slerp(z_a, z_b, t), interpolate_features(features, t))

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

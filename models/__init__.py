"""XMC-GAN networks, losses and the caption -> image pipeline.

Imports are lazy (PEP 562) so that `import models` does no work.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "Generator": "models.generator",
    "Discriminator": "models.discriminator",
    "DiscriminatorOutput": "models.discriminator",
    "TextEncoder": "models.text_encoder",
    "TextFeatures": "models.text_encoder",
    "TextEncoderLoadError": "models.text_encoder",
    "XMCGANPipeline": "models.pipeline",
    "PretrainedImageEncoder": "models.image_encoder",
    "ArtifactError": "models.artifacts",
    "one_line": "models.artifacts",
    "GeneratorConfig": "models.config",
    "DiscriminatorConfig": "models.config",
    "TextEncoderConfig": "models.config",
    "PRESETS": "models.config",
    "get_preset": "models.config",
    "pick_device": "models.runtime",
    "DeviceError": "models.runtime",
    "to_uint8": "models.images",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")

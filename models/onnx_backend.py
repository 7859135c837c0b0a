"""The generator's inference forward on ONNX Runtime, the CPU default of `XMCGANPipeline`, and
the choice between it and PyTorch (`resolve_backend`).

On the CPU, PyTorch's eager forward runs a few hundred small operators per batch, each handed
back to Python: 0.088 GFLOP per 32 px image leaves most of the time in dispatch, and in a
service every operator also waits for the GIL while the event loop holds it. The same graph,
exported once (TorchScript-based `torch.onnx.export`, about a second, in memory) and run by
ONNX Runtime, runs in one call that releases the GIL. Figures: docs/service.md.

The export is of the folded inference generator itself, from the weights already loaded and
verified, so the graph cannot disagree with them; `OnnxGenerator.check` compares both on a
probe batch all the same. The attention maps (return_attention) stay on PyTorch.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from typing import Any

import torch
from torch import nn

INPUTS = ("z", "sentence", "words", "mask")
# the largest difference from the PyTorch forward accepted at load (images are in [0, 1]; the
# float rounding of a different operator order is ~1e-6; one 8-bit level is 1 / 255)
TOLERANCE = 1e-4


def onnxruntime_available() -> bool:
    """onnxruntime to run the graph and onnx, which torch.onnx.export needs to write it."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def export_bytes(generator: nn.Module, example: tuple[torch.Tensor, ...]) -> bytes:
    """The ONNX graph of generator(z, sentence, words, mask) -> images, batch and token axes
    dynamic, weights inside. `example`: one input of each (any batch size)."""
    buffer = io.BytesIO()
    axes = {"z": {0: "batch"}, "sentence": {0: "batch"}, "images": {0: "batch"}}
    axes |= {"words": {0: "batch", 1: "tokens"}, "mask": {0: "batch", 1: "tokens"}}
    # the exporter warns about tracing and prints nothing useful to a server's log
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            generator.eval(),  # traced as forward(z, sentence, words, mask): images
            example,
            buffer,  # type: ignore[arg-type]  # a file object works; the stubs say path
            dynamo=False,
            input_names=list(INPUTS),
            output_names=["images"],
            dynamic_axes=axes,
            opset_version=18,
        )
    return buffer.getvalue()


class OnnxGenerator:
    """generator(z, sentence, words, mask) -> images (B, 3, R, R) float32, on ONNX Runtime's
    CPU provider with `threads` intra-op threads (no spinning: an idle pool would burn the
    cores that the HTTP side needs)."""

    def __init__(self, generator: nn.Module, example: tuple[torch.Tensor, ...], threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only
        self.threads = options.intra_op_num_threads
        self.session = ort.InferenceSession(
            export_bytes(generator, example), options, providers=["CPUExecutionProvider"]
        )

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        feed: dict[str, Any] = {
            name: tensor.detach().cpu().numpy() for name, tensor in zip(INPUTS, inputs, strict=True)
        }
        (images,) = self.session.run(["images"], feed)
        return torch.from_numpy(images)

    def check(self, generator: nn.Module, example: tuple[torch.Tensor, ...]) -> float:
        """The largest difference from `generator` on `example`; raises past TOLERANCE."""
        with torch.inference_mode():
            expected = generator(*example).float()
        difference = float((self(*example) - expected).abs().max())
        if not difference <= TOLERANCE:
            raise RuntimeError(
                f"the ONNX Runtime graph differs from the PyTorch generator by {difference:.2e} "
                f"(tolerance {TOLERANCE:g}); use backend='torch'"
            )
        return difference


BACKENDS = ("auto", "torch", "onnxruntime")


def resolve_backend(backend: str, device: torch.device) -> str:
    """'auto' -> ONNX Runtime on the CPU when it is installed (models/onnx_backend.py), else
    PyTorch; 'onnxruntime' is for the CPU only."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        return "onnxruntime" if device.type == "cpu" and onnxruntime_available() else "torch"
    if backend == "onnxruntime" and device.type != "cpu":
        raise ValueError("backend='onnxruntime' runs on the CPU; use backend='torch' on a GPU")
    if backend == "onnxruntime" and not onnxruntime_available():
        raise ValueError("backend='onnxruntime' needs the onnxruntime and onnx packages")
    return backend

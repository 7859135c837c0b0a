"""FID/KID plumbing, the FID Inception network and CLIP R-precision, on tiny stand-ins."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
import torch

from tests.training.fakes import SIZE, TinyFeatures, image_set
from training.metrics import clip_score, fid
from training.metrics.inception import (
    FIDInceptionV3,
    InceptionWeightsError,
    resize_like_tensorflow1,
)


@pytest.fixture(scope="module", autouse=True)
def _one_thread(single_thread: None) -> None:
    """Every test here runs on one intra-op thread (see tests/conftest.py)."""


# --- FID / KID ------------------------------------------------------------------------------


def test_fid_is_zero_against_itself_and_positive_against_a_shift() -> None:
    real = image_set(0)
    same = fid.frechet_distance(real, real, TinyFeatures())
    shifted = fid.frechet_distance(real, image_set(1, shift=0.3), TinyFeatures())
    assert abs(same) < 1e-3
    assert shifted > 1.0


def test_kid_separates_a_shifted_set() -> None:
    real = image_set(0)
    similar, _ = fid.kernel_distance(real, image_set(1), TinyFeatures(), subsets=10, subset_size=32)
    shifted, _ = fid.kernel_distance(
        real, image_set(1, shift=0.3), TinyFeatures(), subsets=10, subset_size=32
    )
    assert shifted > 0.05
    assert abs(similar) < shifted / 10


def test_resize_matches_tensorflow1_bilinear() -> None:
    # TF1 samples output pixel i at input position i * in / out, clamped at the edge.
    row = torch.tensor([[[[0.0, 10.0]]]])  # (1, 1, 1, 2)
    assert resize_like_tensorflow1(row, 4)[0, 0, 0].tolist() == [0.0, 5.0, 10.0, 10.0]


def test_inception_loads_a_state_dict_file(tmp_path: Path) -> None:
    path = tmp_path / "pt_inception.pth"
    torch.save(FIDInceptionV3().state_dict(), path)
    network = FIDInceptionV3.from_file(path)
    with torch.no_grad():
        features = network(torch.randint(0, 256, (1, 3, SIZE, SIZE), dtype=torch.uint8))
    assert features.shape == (1, 2048) and torch.isfinite(features).all()
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(InceptionWeightsError, match="does not hold the FID Inception"):
        FIDInceptionV3.from_file(tmp_path / "other.pth")
    with pytest.raises(InceptionWeightsError, match="not found"):
        FIDInceptionV3.from_file(tmp_path / "missing.pth")


# --- CLIP R-precision ----------------------------------------------------------------------


def test_r_precision_counts_true_captions_ranked_first() -> None:
    texts = torch.eye(4)  # four orthogonal captions
    candidates = torch.tensor([[0, 1, 2], [1, 2, 3], [2, 3, 0]])
    assert clip_score.r_precision(texts[:3], texts, candidates) == 1.0
    assert clip_score.r_precision(texts[[1, 2, 3]], texts, candidates) == 0.0
    assert clip_score.r_precision(texts[[0, 0, 2]], texts, candidates) == pytest.approx(2 / 3)


def test_candidates_exclude_the_image_own_captions() -> None:
    pool = [(image, f"caption {image} {k}") for image in range(30) for k in range(5)]
    texts, rows = clip_score.candidate_captions(["caption 0 0"], [0], pool, count=100)
    assert rows.shape == (1, 100) and texts[rows[0, 0]] == "caption 0 0"
    assert not any(texts[i].startswith("caption 0 ") for i in rows[0, 1:].tolist())
    assert len(set(rows[0].tolist())) == 100


def _tiny_clip(directory: Path) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    vocab.update({letter: 2 + i for i, letter in enumerate(string.ascii_lowercase)})
    vocab.update({f"{letter}</w>": 28 + i for i, letter in enumerate(string.ascii_lowercase)})
    layers = {
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
    }
    config = CLIPConfig(
        text_config={
            **layers,
            "vocab_size": len(vocab),
            "max_position_embeddings": 64,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        vision_config={**layers, "image_size": SIZE, "patch_size": 8},
        projection_dim=8,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(directory)
    CLIPProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE}
        ),
        tokenizer=CLIPTokenizer(vocab=vocab, merges=[]),
    ).save_pretrained(directory)
    return directory


def test_clip_encoders_from_a_local_checkpoint(tmp_path: Path) -> None:
    encode_images, encode_texts = clip_score.clip_encoders(_tiny_clip(tmp_path / "clip"))
    texts = encode_texts(["a red circle", "a blue square", "a red circle"])
    assert texts.shape == (3, 8)
    assert torch.equal(texts[0], texts[2]) and not torch.allclose(texts[0], texts[1])
    assert encode_texts(["a blue square " * 20]).shape == (1, 8)  # truncated to 64 positions
    images = image_set(0, count=3)
    assert encode_images(images).shape == (3, 8)
    assert torch.allclose(encode_images(images[:1]), encode_images(images)[:1], atol=1e-5)

"""Losses against hand-worked values and against naive loop implementations (float64)."""

from __future__ import annotations

import math

import pytest
import torch

from models.losses import (
    dual_contrastive_d_loss,
    dual_contrastive_g_loss,
    hinge_d_loss,
    hinge_g_loss,
    image_contrastive_loss,
    infomax_loss,
    sentence_contrastive_loss,
    word_region_contrastive_loss,
    word_region_scores,
)
from tests.models.naive import (
    close,
    naive_contrastive,
    naive_dual,
    naive_infomax,
    naive_scores,
    naive_symmetric_ce,
    random_words,
    seeded,
)

# ----------------------------------------------------------------------------- L_sent and L_img

PAIRED = (sentence_contrastive_loss, image_contrastive_loss)


@pytest.mark.parametrize("contrastive_loss", PAIRED)
def test_contrastive_loss_hand_worked(contrastive_loss):
    a = torch.tensor([[2.0, 0.0], [0.0, 3.0]])  # normalises to the identity
    b = torch.tensor([[1.0, 1.0], [0.0, 1.0]])  # normalises to [[1/√2, 1/√2], [0, 1]]
    s = 1 / math.sqrt(2) / 0.1  # logits = [[s, 0], [s, 10]]
    rows = (math.log(1 + math.exp(-s)) + math.log(1 + math.exp(s - 10))) / 2
    cols = (math.log(2) + math.log(1 + math.exp(-10))) / 2
    close(contrastive_loss(a, b, temperature=0.1), rows + cols)


@pytest.mark.parametrize("contrastive_loss", PAIRED)
def test_contrastive_loss_matches_naive_and_is_symmetric(contrastive_loss):
    g = seeded(1)
    a, b = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    for tau in (0.1, 0.5):
        close(contrastive_loss(a, b, tau), naive_contrastive(a, b, tau))
    torch.testing.assert_close(contrastive_loss(a, b), contrastive_loss(b, a))


@pytest.mark.parametrize("contrastive_loss", PAIRED)
def test_contrastive_loss_perfect_alignment_is_low(contrastive_loss):
    eye = torch.eye(4)
    close(contrastive_loss(eye, 3 * eye, 0.1), 2 * math.log(1 + 3 * math.exp(-10)))
    assert contrastive_loss(eye, eye).item() < 1e-3
    assert contrastive_loss(eye, eye.roll(1, dims=0)).item() > 10.0


@pytest.mark.parametrize("contrastive_loss", PAIRED)
def test_contrastive_loss_zero_row_is_finite(contrastive_loss):
    a = torch.zeros(2, 3, requires_grad=True)
    loss = contrastive_loss(a, torch.randn(2, 3, generator=seeded(2)))
    loss.backward()
    close(loss, 2 * math.log(2))  # all logits 0
    assert torch.isfinite(a.grad).all()


# ----------------------------------------------------------------------------- word-region


def _two_region_case(rho1: float) -> float:
    """Regions e1, e2 and word e1: alpha = softmax(rho1, 0), c = (alpha1, alpha2)."""
    alpha1 = math.exp(rho1) / (math.exp(rho1) + 1)
    return alpha1 / math.hypot(alpha1, 1 - alpha1)


def test_word_region_scores_hand_worked():
    regions = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # (1, 2, 2)
    words = torch.tensor([[[3.0, 0.0], [0.0, 1.0]]])  # word 2 mirrors word 1: same cosine
    cos = _two_region_case(rho1=5.0)
    one_word = word_region_scores(regions, words, torch.tensor([[True, False]]), 5.0, 4.0)
    two_words = word_region_scores(regions, words, torch.tensor([[True, True]]), 5.0, 4.0)
    assert one_word.shape == (1, 1)
    close(one_word[0, 0], cos)
    close(two_words[0, 0], cos + math.log(2) / 4.0)  # log(2 e^{rho2 cos}) / rho2


def test_word_region_scores_match_naive_loops():
    regions, words, mask = random_words()
    for rho1, rho2 in ((5.0, 5.0), (1.0, 10.0)):
        scores = word_region_scores(regions, words, mask, rho1, rho2)
        expected = torch.tensor(naive_scores(regions, words, mask, rho1, rho2), dtype=torch.float64)
        assert scores.dtype == torch.float32 and scores.shape == (3, 3)
        torch.testing.assert_close(scores.double(), expected, atol=1e-5, rtol=1e-5)


def test_word_region_scores_rectangular_batches():
    regions, words, mask = random_words()
    scores = word_region_scores(regions[:2], words, mask)
    assert scores.shape == (3, 2)
    torch.testing.assert_close(scores, word_region_scores(regions, words, mask)[:, :2])


def test_padded_words_are_ignored_in_value_and_gradient():
    regions, words, mask = random_words()
    garbage = words.masked_fill(~mask[..., None], 1e6)
    garbage[1, 3] = float("nan")
    garbage.requires_grad_(True)
    loss = word_region_contrastive_loss(regions, garbage, mask)
    torch.testing.assert_close(loss, word_region_contrastive_loss(regions, words, mask))
    loss.backward()
    assert torch.isfinite(garbage.grad).all()
    assert (garbage.grad[~mask] == 0).all()
    assert (garbage.grad[mask].abs().sum(-1) > 0).all()


def test_caption_without_words_scores_zero_without_nan():
    regions, words, mask = random_words()
    mask[1] = False
    words.requires_grad_(True)
    scores = word_region_scores(regions, words, mask)
    assert (scores[1] == 0).all() and torch.isfinite(scores).all()
    loss = word_region_contrastive_loss(regions, words, mask)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(words.grad).all()
    assert (words.grad[1] == 0).all()


def test_word_region_contrastive_loss_matches_naive():
    regions, words, mask = random_words(3)
    scores = naive_scores(regions, words, mask, 5.0, 5.0)
    for rho3 in (50.0, 2.0):
        expected = naive_symmetric_ce([[rho3 * s for s in row] for row in scores])
        loss = word_region_contrastive_loss(regions, words, mask, 5.0, 5.0, rho3)
        close(loss, expected, tol=1e-4)


def test_word_region_perfect_alignment_is_low():
    regions = torch.eye(3)[:, None, :].repeat(1, 2, 1)  # image i: two copies of e_i
    words = torch.eye(3)[:, None, :]  # caption i: the single word e_i
    mask = torch.ones(3, 1, dtype=torch.bool)
    scores = word_region_scores(regions, words, mask)
    torch.testing.assert_close(scores, torch.eye(3))  # cos 1 on the diagonal, 0 elsewhere
    assert word_region_contrastive_loss(regions, words, mask).item() < 1e-6


# ----------------------------------------------------------------------------- adversarial


def test_hinge_losses_hand_worked():
    real = torch.tensor([0.5, 2.0, -1.0])
    fake = torch.tensor([-2.0, 0.0, 0.5])
    close(hinge_d_loss(real, fake), 2.5 / 3 + 2.5 / 3)
    close(hinge_g_loss(fake), 1.5 / 3)  # -mean(-2, 0, 0.5)


def test_dual_contrastive_hand_worked():
    zero, one = torch.zeros(1), torch.ones(1)
    close(dual_contrastive_d_loss(zero, zero), 2 * math.log(2))
    close(dual_contrastive_g_loss(zero, zero), 2 * math.log(2))
    close(dual_contrastive_d_loss(one, -one), 2 * math.log(1 + math.exp(-2)))
    close(dual_contrastive_g_loss(one, -one), 2 * math.log(1 + math.exp(2)))


def test_dual_contrastive_matches_naive():
    g = seeded(4)
    real, fake = torch.randn(3, generator=g), torch.randn(4, 1, generator=g)
    r, f = real.tolist(), fake[:, 0].tolist()
    d_expected = naive_dual(r, f) + naive_dual([-x for x in f], [-x for x in r])
    g_expected = naive_dual(f, r) + naive_dual([-x for x in r], [-x for x in f])
    close(dual_contrastive_d_loss(real, fake), d_expected)
    close(dual_contrastive_g_loss(real, fake), g_expected)


def test_dual_contrastive_gradient_signs():
    g = seeded(5)
    real = (3 * torch.randn(6, generator=g)).requires_grad_(True)
    fake = (3 * torch.randn(5, generator=g)).requires_grad_(True)
    dual_contrastive_d_loss(real, fake).backward()
    assert (real.grad < 0).all() and (fake.grad > 0).all()
    real.grad, fake.grad = None, None
    dual_contrastive_g_loss(real, fake).backward()
    assert (fake.grad < 0).all() and (real.grad > 0).all()


# ----------------------------------------------------------------------------- infomax


def test_infomax_hand_worked():
    local = torch.tensor([[[1.0]], [[2.0]]])  # (B=2, K=1, R=1)
    glob = torch.tensor([[1.0], [-1.0]])  # (B=2, R=1)
    image0 = math.log(math.exp(1) + math.exp(-10) + math.exp(2)) - 1  # logits [1, -10, 2]
    image1 = math.log(math.exp(-2) + math.exp(-1) + math.exp(-10)) + 2  # logits [-2, -1, -10]
    close(infomax_loss(local, glob), (image0 + image1) / 2)


def test_infomax_matches_naive():
    g = seeded(6)
    local, glob = torch.randn(3, 4, 5, generator=g), torch.randn(3, 5, generator=g)
    for self_score in (-10.0, 0.0):
        close(infomax_loss(local, glob, self_score), naive_infomax(local, glob, self_score))
    close(infomax_loss(local[:1], glob[:1]), naive_infomax(local[:1], glob[:1], -10.0))


# ----------------------------------------------------------------------------- dtype and errors


def test_float32_under_bf16_autocast():
    g = seeded(7)
    a, b = (torch.randn(4, 8, generator=g).bfloat16() for _ in range(2))
    regions, words, mask = random_words()
    regions, words = regions.bfloat16(), words.bfloat16()
    local, glob = torch.randn(2, 3, 4, generator=g).bfloat16(), torch.randn(2, 4, generator=g)
    real, fake = torch.randn(3, generator=g).bfloat16(), torch.randn(3, generator=g).bfloat16()
    calls = [
        (sentence_contrastive_loss, (a, b)),
        (image_contrastive_loss, (a, b)),
        (word_region_scores, (regions, words, mask)),
        (word_region_contrastive_loss, (regions, words, mask)),
        (infomax_loss, (local, glob.bfloat16())),
        (dual_contrastive_d_loss, (real, fake)),
        (dual_contrastive_g_loss, (real, fake)),
        (hinge_d_loss, (real, fake)),
        (hinge_g_loss, (fake,)),
    ]
    for function, args in calls:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            result = function(*args)
        as_float = [x.float() if x.is_floating_point() else x for x in args]
        assert result.dtype == torch.float32, function.__name__
        torch.testing.assert_close(result, function(*as_float), atol=1e-5, rtol=1e-5)


_MASK = torch.ones(2, 3, dtype=torch.bool)  # (B=2, T=3)
_WORDS = torch.ones(2, 3, 4)  # (B=2, T=3, D=4)
_REGIONS = torch.ones(2, 5, 4)  # (B=2, N=5, D=4)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: sentence_contrastive_loss(torch.ones(2, 3), torch.ones(3, 3)), r"\(B, d\)"),
        (lambda: sentence_contrastive_loss(torch.ones(3), torch.ones(3)), "image_features"),
        (lambda: image_contrastive_loss(torch.ones(2, 3), torch.ones(2, 4)), "other_features"),
        (lambda: image_contrastive_loss(torch.ones(2, 3), torch.ones(2, 3), 0.0), "temperature"),
        (lambda: word_region_scores(torch.ones(2, 4), _WORDS, _MASK), "regions"),
        (lambda: word_region_scores(_REGIONS, torch.ones(2, 3, 6), _MASK), "same D"),
        (lambda: word_region_scores(_REGIONS, _WORDS, _MASK.float()), "bool"),
        (lambda: word_region_scores(_REGIONS, _WORDS, _MASK[:, :2]), "word_mask"),
        (lambda: word_region_scores(_REGIONS, _WORDS, _MASK, rho2=0.0), "rho2"),
        (lambda: word_region_contrastive_loss(_REGIONS[:1], _WORDS, _MASK), "batch size"),
        (lambda: word_region_contrastive_loss(_REGIONS, _WORDS, _MASK, rho3=-1.0), "rho3"),
        (lambda: dual_contrastive_d_loss(torch.ones(2, 2), torch.ones(2)), "real_logits"),
        (lambda: dual_contrastive_g_loss(torch.ones(2), torch.ones(0)), "fake_logits"),
        (lambda: hinge_d_loss(torch.ones(0), torch.ones(2)), "non-empty"),
        (lambda: infomax_loss(torch.ones(2, 3, 4), torch.ones(2, 5)), "agree"),
        (lambda: infomax_loss(torch.ones(2, 4), torch.ones(2, 4)), r"\(B, K, R\)"),
    ],
)
def test_bad_shapes_raise_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()

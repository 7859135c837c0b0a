"""Losses against hand-worked values and against naive loop implementations (float64)."""

from __future__ import annotations

import math

import pytest
import torch

from models.losses import (
    contrastive_loss,
    dual_contrastive_d_loss,
    dual_contrastive_g_loss,
    hinge_d_loss,
    hinge_g_loss,
    infomax_loss,
    pair_ranking_loss,
    word_region_contrastive_loss,
    word_region_scores,
)


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _close(actual: torch.Tensor, expected: float, tol: float = 1e-5) -> None:
    assert actual.dtype == torch.float32
    assert abs(actual.item() - expected) <= tol * max(1.0, abs(expected)), (actual, expected)


# ----------------------------------------------------------------------------- naive references


def _naive_cross_entropy(row: list[float], target: int) -> float:
    top = max(row)
    return -(row[target] - top - math.log(sum(math.exp(v - top) for v in row)))


def _naive_symmetric_ce(logits: list[list[float]]) -> float:
    n = len(logits)
    rows = sum(_naive_cross_entropy(logits[i], i) for i in range(n)) / n
    cols = sum(_naive_cross_entropy([logits[j][i] for j in range(n)], i) for i in range(n)) / n
    return rows + cols


def _cos(u: torch.Tensor, v: torch.Tensor) -> float:
    return (torch.dot(u, v) / (u.norm() * v.norm())).item()


def _naive_contrastive(a: torch.Tensor, b: torch.Tensor, tau: float) -> float:
    a, b = a.double(), b.double()
    n = a.shape[0]
    return _naive_symmetric_ce([[_cos(a[i], b[j]) / tau for j in range(n)] for i in range(n)])


def _naive_word_region_score(
    regions: torch.Tensor, words: torch.Tensor, length: list[bool], rho1: float, rho2: float
) -> float:
    """One caption (T, D) against one image (N, D) with explicit loops over words and regions."""
    total = 0.0
    for t in range(words.shape[0]):
        if not length[t]:
            continue
        weights = [math.exp(rho1 * _cos(words[t], regions[n])) for n in range(regions.shape[0])]
        context = torch.zeros(regions.shape[1], dtype=torch.float64)
        for n in range(regions.shape[0]):
            context += weights[n] / sum(weights) * regions[n] / regions[n].norm()
        total += math.exp(rho2 * _cos(words[t], context))
    return math.log(total) / rho2


def _naive_scores(regions, words, mask, rho1, rho2) -> list[list[float]]:
    regions, words = regions.double(), words.double()
    return [
        [
            _naive_word_region_score(regions[j], words[i], mask[i].tolist(), rho1, rho2)
            for j in range(regions.shape[0])
        ]
        for i in range(words.shape[0])
    ]


def _naive_dual(positives: list[float], negatives: list[float]) -> float:
    total = 0.0
    for p in positives:
        total += -math.log(math.exp(p) / (math.exp(p) + sum(math.exp(q) for q in negatives)))
    return total / len(positives)


def _naive_infomax(local: torch.Tensor, glob: torch.Tensor, self_score: float) -> float:
    local, glob = local.double(), glob.double()
    batch, locations, _ = local.shape
    total = 0.0
    for i in range(batch):
        for k in range(locations):
            positive = torch.dot(glob[i], local[i, k]).item()
            denominator = math.exp(positive)
            for j in range(batch):
                for k2 in range(locations):
                    score = self_score if j == i else torch.dot(glob[i], local[j, k2]).item()
                    denominator += math.exp(score)
            total += math.log(denominator) - positive
    return total / (batch * locations)


def _random_words(seed: int = 0):
    g = _generator(seed)
    regions = torch.randn(3, 4, 6, generator=g)  # (B, N, D)
    words = torch.randn(3, 5, 6, generator=g)  # (B, T, D)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 1, 1, 0]], dtype=torch.bool)
    return regions, words, mask


# ----------------------------------------------------------------------------- contrastive_loss


def test_contrastive_loss_hand_worked():
    a = torch.tensor([[2.0, 0.0], [0.0, 3.0]])  # normalises to the identity
    b = torch.tensor([[1.0, 1.0], [0.0, 1.0]])  # normalises to [[1/√2, 1/√2], [0, 1]]
    s = 1 / math.sqrt(2) / 0.1  # logits = [[s, 0], [s, 10]]
    rows = (math.log(1 + math.exp(-s)) + math.log(1 + math.exp(s - 10))) / 2
    cols = (math.log(2) + math.log(1 + math.exp(-10))) / 2
    _close(contrastive_loss(a, b, temperature=0.1), rows + cols)


def test_contrastive_loss_matches_naive_and_is_symmetric():
    g = _generator(1)
    a, b = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    for tau in (0.1, 0.5):
        _close(contrastive_loss(a, b, tau), _naive_contrastive(a, b, tau))
    torch.testing.assert_close(contrastive_loss(a, b), contrastive_loss(b, a))


def test_contrastive_loss_perfect_alignment_is_low():
    eye = torch.eye(4)
    _close(contrastive_loss(eye, 3 * eye, 0.1), 2 * math.log(1 + 3 * math.exp(-10)))
    assert contrastive_loss(eye, eye).item() < 1e-3
    assert contrastive_loss(eye, eye.roll(1, dims=0)).item() > 10.0


def test_contrastive_loss_zero_row_is_finite():
    a = torch.zeros(2, 3, requires_grad=True)
    loss = contrastive_loss(a, torch.randn(2, 3, generator=_generator(2)))
    loss.backward()
    _close(loss, 2 * math.log(2))  # all logits 0
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
    _close(one_word[0, 0], cos)
    _close(two_words[0, 0], cos + math.log(2) / 4.0)  # log(2 e^{rho2 cos}) / rho2


def test_word_region_scores_match_naive_loops():
    regions, words, mask = _random_words()
    for rho1, rho2 in ((5.0, 5.0), (1.0, 10.0)):
        scores = word_region_scores(regions, words, mask, rho1, rho2)
        expected = torch.tensor(
            _naive_scores(regions, words, mask, rho1, rho2), dtype=torch.float64
        )
        assert scores.dtype == torch.float32 and scores.shape == (3, 3)
        torch.testing.assert_close(scores.double(), expected, atol=1e-5, rtol=1e-5)


def test_word_region_scores_rectangular_batches():
    regions, words, mask = _random_words()
    scores = word_region_scores(regions[:2], words, mask)
    assert scores.shape == (3, 2)
    torch.testing.assert_close(scores, word_region_scores(regions, words, mask)[:, :2])


def test_padded_words_are_ignored_in_value_and_gradient():
    regions, words, mask = _random_words()
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
    regions, words, mask = _random_words()
    mask[1] = False
    words.requires_grad_(True)
    scores = word_region_scores(regions, words, mask)
    assert (scores[1] == 0).all() and torch.isfinite(scores).all()
    loss = word_region_contrastive_loss(regions, words, mask)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(words.grad).all()
    assert (words.grad[1] == 0).all()


def test_word_region_contrastive_loss_matches_naive():
    regions, words, mask = _random_words(3)
    scores = _naive_scores(regions, words, mask, 5.0, 5.0)
    for rho3 in (50.0, 2.0):
        expected = _naive_symmetric_ce([[rho3 * s for s in row] for row in scores])
        loss = word_region_contrastive_loss(regions, words, mask, 5.0, 5.0, rho3)
        _close(loss, expected, tol=1e-4)


def test_word_region_perfect_alignment_is_low():
    regions = torch.eye(3)[:, None, :].repeat(1, 2, 1)  # image i: two copies of e_i
    words = torch.eye(3)[:, None, :]  # caption i: the single word e_i
    mask = torch.ones(3, 1, dtype=torch.bool)
    scores = word_region_scores(regions, words, mask)
    torch.testing.assert_close(scores, torch.eye(3))  # cos 1 on the diagonal, 0 elsewhere
    assert word_region_contrastive_loss(regions, words, mask).item() < 1e-6


# ----------------------------------------------------------------------------- hard negatives


def _naive_with_negatives(logits, hard, valid) -> float:
    """Symmetric CE where row i (a_i against every b) also holds hard[i] when valid[i]."""
    n = len(logits)
    rows = [logits[i] + ([hard[i]] if valid[i] else []) for i in range(n)]
    cols = [[logits[j][i] for j in range(n)] for i in range(n)]
    return (
        sum(_naive_cross_entropy(r, i) for i, r in enumerate(rows)) / n
        + sum(_naive_cross_entropy(c, i) for i, c in enumerate(cols)) / n
    )


def test_contrastive_hard_negatives_join_only_their_own_row():
    g = _generator(7)
    a, b, neg = (torch.randn(4, 5, generator=g) for _ in range(3))
    valid = torch.tensor([True, False, True, True])
    logits = [[_cos(a[i].double(), b[j].double()) / 0.1 for j in range(4)] for i in range(4)]
    hard = [_cos(a[i].double(), neg[i].double()) / 0.1 for i in range(4)]
    expected = _naive_with_negatives(logits, hard, valid.tolist())
    _close(contrastive_loss(a, b, 0.1, neg, valid), expected)
    # a negative equal to the positive halves that row's probability: the loss rises
    assert contrastive_loss(a, b, 0.1, b.clone()) > contrastive_loss(a, b, 0.1)
    none = torch.zeros(4, dtype=torch.bool)
    torch.testing.assert_close(contrastive_loss(a, b, 0.1, neg, none), contrastive_loss(a, b, 0.1))


def test_word_region_hard_negatives_join_the_image_rows():
    regions, words, mask = _random_words(4)
    g = _generator(5)
    neg_words = torch.randn(3, 5, 6, generator=g)
    neg_mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    valid = torch.tensor([True, True, False])
    scores = _naive_scores(regions, words, mask, 5.0, 5.0)  # [caption i][image j]
    hard = [
        _naive_scores(regions[i : i + 1], neg_words[i : i + 1], neg_mask[i : i + 1], 5.0, 5.0)[0][0]
        for i in range(3)
    ]
    image_rows = [[2.0 * scores[j][i] for j in range(3)] for i in range(3)]  # image i's row
    expected = _naive_with_negatives(image_rows, [2.0 * h for h in hard], valid.tolist())
    loss = word_region_contrastive_loss(
        regions, words, mask, 5.0, 5.0, 2.0, neg_words, neg_mask, valid
    )
    _close(loss, expected, tol=1e-4)
    with pytest.raises(ValueError, match="negative_words must have shape"):
        word_region_contrastive_loss(regions, words, mask, 5.0, 5.0, 2.0, neg_words[:2], neg_mask)


def test_pair_ranking_matches_two_way_cross_entropy():
    g = _generator(9)
    a, b, neg = (torch.randn(5, 4, generator=g) for _ in range(3))
    valid = torch.tensor([True, False, True, True, False])
    rows = [
        _naive_cross_entropy([_cos(a[i].double(), x[i].double()) / 0.2 for x in (b, neg)], 0)
        for i in range(5)
        if valid[i]
    ]
    _close(pair_ranking_loss(a, b, neg, valid, 0.2), sum(rows) / len(rows))
    # the edited caption scored as high as the true one: log 2 per row, whatever else is in batch
    _close(pair_ranking_loss(a, b, b.clone()), math.log(2))
    none = torch.zeros(5, dtype=torch.bool)
    a.requires_grad_(True)
    empty = pair_ranking_loss(a, b, neg, none)
    empty.backward()  # still on the graph, with no push anywhere
    assert empty.item() == 0.0 and not a.grad.any()
    with pytest.raises(ValueError, match="b_negatives must have shape"):
        pair_ranking_loss(a, b, neg[:3])


# ----------------------------------------------------------------------------- adversarial


def test_hinge_losses_hand_worked():
    real = torch.tensor([0.5, 2.0, -1.0])
    fake = torch.tensor([-2.0, 0.0, 0.5])
    _close(hinge_d_loss(real, fake), 2.5 / 3 + 2.5 / 3)
    _close(hinge_g_loss(fake), 1.5 / 3)  # -mean(-2, 0, 0.5)


def test_dual_contrastive_hand_worked():
    zero, one = torch.zeros(1), torch.ones(1)
    _close(dual_contrastive_d_loss(zero, zero), 2 * math.log(2))
    _close(dual_contrastive_g_loss(zero, zero), 2 * math.log(2))
    _close(dual_contrastive_d_loss(one, -one), 2 * math.log(1 + math.exp(-2)))
    _close(dual_contrastive_g_loss(one, -one), 2 * math.log(1 + math.exp(2)))


def test_dual_contrastive_matches_naive():
    g = _generator(4)
    real, fake = torch.randn(3, generator=g), torch.randn(4, 1, generator=g)
    r, f = real.tolist(), fake[:, 0].tolist()
    d_expected = _naive_dual(r, f) + _naive_dual([-x for x in f], [-x for x in r])
    g_expected = _naive_dual(f, r) + _naive_dual([-x for x in r], [-x for x in f])
    _close(dual_contrastive_d_loss(real, fake), d_expected)
    _close(dual_contrastive_g_loss(real, fake), g_expected)


def test_dual_contrastive_gradient_signs():
    g = _generator(5)
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
    _close(infomax_loss(local, glob), (image0 + image1) / 2)


def test_infomax_matches_naive():
    g = _generator(6)
    local, glob = torch.randn(3, 4, 5, generator=g), torch.randn(3, 5, generator=g)
    for self_score in (-10.0, 0.0):
        _close(infomax_loss(local, glob, self_score), _naive_infomax(local, glob, self_score))
    _close(infomax_loss(local[:1], glob[:1]), _naive_infomax(local[:1], glob[:1], -10.0))


# ----------------------------------------------------------------------------- dtype and errors


def test_float32_under_bf16_autocast():
    g = _generator(7)
    a, b = (torch.randn(4, 8, generator=g).bfloat16() for _ in range(2))
    regions, words, mask = _random_words()
    regions, words = regions.bfloat16(), words.bfloat16()
    local, glob = torch.randn(2, 3, 4, generator=g).bfloat16(), torch.randn(2, 4, generator=g)
    real, fake = torch.randn(3, generator=g).bfloat16(), torch.randn(3, generator=g).bfloat16()
    calls = [
        (contrastive_loss, (a, b)),
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
        (lambda: contrastive_loss(torch.ones(2, 3), torch.ones(3, 3)), r"\(B, d\)"),
        (lambda: contrastive_loss(torch.ones(3), torch.ones(3)), r"\(B, d\)"),
        (lambda: contrastive_loss(torch.ones(2, 3), torch.ones(2, 3), 0.0), "temperature"),
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

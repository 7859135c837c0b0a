"""The swap-negative losses against float64 references, and against the paper's losses."""

from __future__ import annotations

import math

import pytest
import torch

from models.losses import sentence_contrastive_loss, word_region_contrastive_loss
from tests.models.naive import (
    close,
    cosine,
    naive_cross_entropy,
    naive_scores,
    random_words,
    seeded,
)
from training.experiments.losses import (
    mismatch_hinge_loss,
    sentence_contrastive_loss_with_negatives,
    swap_ranking_loss,
    word_region_contrastive_loss_with_negatives,
)


def _naive_with_negatives(logits, hard, valid) -> float:
    """Symmetric CE where row i (a_i against every b) also holds hard[i] when valid[i]."""
    n = len(logits)
    rows = [logits[i] + ([hard[i]] if valid[i] else []) for i in range(n)]
    cols = [[logits[j][i] for j in range(n)] for i in range(n)]
    return (
        sum(naive_cross_entropy(r, i) for i, r in enumerate(rows)) / n
        + sum(naive_cross_entropy(c, i) for i, c in enumerate(cols)) / n
    )


def test_sentence_hard_negatives_join_only_their_own_row():
    g = seeded(7)
    a, b, neg = (torch.randn(4, 5, generator=g) for _ in range(3))
    valid = torch.tensor([True, False, True, True])
    logits = [[cosine(a[i].double(), b[j].double()) / 0.1 for j in range(4)] for i in range(4)]
    hard = [cosine(a[i].double(), neg[i].double()) / 0.1 for i in range(4)]
    expected = _naive_with_negatives(logits, hard, valid.tolist())
    close(sentence_contrastive_loss_with_negatives(a, b, neg, valid, 0.1), expected)
    # a negative equal to the positive halves that row's probability: the loss rises
    every = torch.ones(4, dtype=torch.bool)
    raised = sentence_contrastive_loss_with_negatives(a, b, b.clone(), every, 0.1)
    assert raised > sentence_contrastive_loss(a, b, 0.1)
    # with no valid negative it is the paper's L_sent
    none = torch.zeros(4, dtype=torch.bool)
    torch.testing.assert_close(
        sentence_contrastive_loss_with_negatives(a, b, neg, none, 0.1),
        sentence_contrastive_loss(a, b, 0.1),
    )


def test_word_region_hard_negatives_join_the_image_rows():
    regions, words, mask = random_words(4)
    g = seeded(5)
    neg_words = torch.randn(3, 5, 6, generator=g)
    neg_mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    valid = torch.tensor([True, True, False])
    scores = naive_scores(regions, words, mask, 5.0, 5.0)  # [caption i][image j]
    hard = [
        naive_scores(regions[i : i + 1], neg_words[i : i + 1], neg_mask[i : i + 1], 5.0, 5.0)[0][0]
        for i in range(3)
    ]
    image_rows = [[2.0 * scores[j][i] for j in range(3)] for i in range(3)]  # image i's row
    expected = _naive_with_negatives(image_rows, [2.0 * h for h in hard], valid.tolist())
    loss = word_region_contrastive_loss_with_negatives(
        regions, words, mask, neg_words, neg_mask, valid, 5.0, 5.0, 2.0
    )
    close(loss, expected, tol=1e-4)
    none = torch.zeros(3, dtype=torch.bool)
    torch.testing.assert_close(
        word_region_contrastive_loss_with_negatives(
            regions, words, mask, neg_words, neg_mask, none, 5.0, 5.0, 2.0
        ),
        word_region_contrastive_loss(regions, words, mask, 5.0, 5.0, 2.0),
    )
    with pytest.raises(ValueError, match="negative_words must have shape"):
        word_region_contrastive_loss_with_negatives(
            regions, words, mask, neg_words[:2], neg_mask, valid
        )


def test_swap_ranking_matches_two_way_cross_entropy():
    g = seeded(9)
    a, b, neg = (torch.randn(5, 4, generator=g) for _ in range(3))
    valid = torch.tensor([True, False, True, True, False])
    rows = [
        naive_cross_entropy([cosine(a[i].double(), x[i].double()) / 0.2 for x in (b, neg)], 0)
        for i in range(5)
        if valid[i]
    ]
    close(swap_ranking_loss(a, b, neg, valid, 0.2), sum(rows) / len(rows))
    # the edited caption scored as high as the true one: log 2 per row, whatever else is in batch
    close(swap_ranking_loss(a, b, b.clone(), torch.ones(5, dtype=torch.bool)), math.log(2))
    none = torch.zeros(5, dtype=torch.bool)
    a.requires_grad_(True)
    empty = swap_ranking_loss(a, b, neg, none)
    empty.backward()  # still on the graph, with no push anywhere
    assert empty.item() == 0.0 and not a.grad.any()
    with pytest.raises(ValueError, match="negatives must have shape"):
        swap_ranking_loss(a, b, neg[:3], valid)
    with pytest.raises(ValueError, match="valid must be a bool"):
        swap_ranking_loss(a, b, neg, valid.float())


def test_float32_under_bf16_autocast():
    g = seeded(3)
    a, b, neg = (torch.randn(4, 8, generator=g).bfloat16() for _ in range(3))
    valid = torch.tensor([True, False, True, True])
    for loss in (sentence_contrastive_loss_with_negatives, swap_ranking_loss):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            result = loss(a, b, neg, valid)
        assert result.dtype == torch.float32, loss.__name__
        torch.testing.assert_close(result, loss(a.float(), b.float(), neg.float(), valid))


def test_mismatch_hinge_is_the_hinge_of_the_logit_with_the_edited_caption():
    g = seeded(11)
    phi, own, edited = (torch.randn(4, 3, generator=g) for _ in range(3))
    unconditional = torch.randn(4, generator=g)
    logits = unconditional + (phi * own).sum(1)  # D's projection logit with the own caption
    valid = torch.tensor([True, True, False, True])
    expected = [
        max(
            0.0,
            1.0 + float(unconditional[i]) + sum(float(phi[i, k] * edited[i, k]) for k in range(3)),
        )
        for i in range(4)
        if valid[i]
    ]
    loss = mismatch_hinge_loss(logits, phi, own, edited, valid)
    assert loss.item() == pytest.approx(sum(expected) / len(expected), rel=1e-5)
    none = mismatch_hinge_loss(logits, phi, own, edited, torch.zeros(4, dtype=torch.bool))
    assert none.item() == 0.0
    with pytest.raises(ValueError, match="expected logits"):
        mismatch_hinge_loss(logits[:, None], phi, own, edited, valid)

"""Float64 references for the losses: naive loops over rows, words and regions, written
straight from the equations, that the float32 implementations are checked against."""

from __future__ import annotations

import math

import torch


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def close(actual: torch.Tensor, expected: float, tol: float = 1e-5) -> None:
    assert actual.dtype == torch.float32
    assert abs(actual.item() - expected) <= tol * max(1.0, abs(expected)), (actual, expected)


def naive_cross_entropy(row: list[float], target: int) -> float:
    top = max(row)
    return -(row[target] - top - math.log(sum(math.exp(v - top) for v in row)))


def naive_symmetric_ce(logits: list[list[float]]) -> float:
    n = len(logits)
    rows = sum(naive_cross_entropy(logits[i], i) for i in range(n)) / n
    cols = sum(naive_cross_entropy([logits[j][i] for j in range(n)], i) for i in range(n)) / n
    return rows + cols


def cosine(u: torch.Tensor, v: torch.Tensor) -> float:
    return (torch.dot(u, v) / (u.norm() * v.norm())).item()


def naive_contrastive(a: torch.Tensor, b: torch.Tensor, tau: float) -> float:
    a, b = a.double(), b.double()
    n = a.shape[0]
    return naive_symmetric_ce([[cosine(a[i], b[j]) / tau for j in range(n)] for i in range(n)])


def naive_word_region_score(
    regions: torch.Tensor, words: torch.Tensor, length: list[bool], rho1: float, rho2: float
) -> float:
    """One caption (T, D) against one image (N, D) with explicit loops over words and regions."""
    total = 0.0
    for t in range(words.shape[0]):
        if not length[t]:
            continue
        weights = [math.exp(rho1 * cosine(words[t], regions[n])) for n in range(regions.shape[0])]
        context = torch.zeros(regions.shape[1], dtype=torch.float64)
        for n in range(regions.shape[0]):
            context += weights[n] / sum(weights) * regions[n] / regions[n].norm()
        total += math.exp(rho2 * cosine(words[t], context))
    return math.log(total) / rho2


def naive_scores(regions, words, mask, rho1, rho2) -> list[list[float]]:
    regions, words = regions.double(), words.double()
    return [
        [
            naive_word_region_score(regions[j], words[i], mask[i].tolist(), rho1, rho2)
            for j in range(regions.shape[0])
        ]
        for i in range(words.shape[0])
    ]


def naive_dual(positives: list[float], negatives: list[float]) -> float:
    total = 0.0
    for p in positives:
        total += -math.log(math.exp(p) / (math.exp(p) + sum(math.exp(q) for q in negatives)))
    return total / len(positives)


def naive_infomax(local: torch.Tensor, glob: torch.Tensor, self_score: float) -> float:
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


def random_words(seed: int = 0):
    g = seeded(seed)
    regions = torch.randn(3, 4, 6, generator=g)  # (B, N, D)
    words = torch.randn(3, 5, 6, generator=g)  # (B, T, D)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 1, 1, 0]], dtype=torch.bool)
    return regions, words, mask

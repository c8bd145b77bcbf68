"""The audit's statistics: intervals, paired tests, homogeneity, agreement, multiple testing.

Pure functions over counts and arrays (numpy + scipy); nothing here knows about suites,
judges or storage, so every function is checked against textbook values in
``tests/unit/test_audit_stats.py``. Methods and their references are in docs/audit-methods.md.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson 1927); (0, 1) when n == 0."""
    if n <= 0:
        return (0.0, 1.0)
    z = float(sps.norm.ppf(0.5 + level / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_rate_ci(
    clusters: Sequence[tuple[int, int]],
    *,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a pooled rate, resampling whole clusters (templates).

    ``clusters`` holds one ``(successes, trials)`` per template. Resampling templates rather
    than single answers keeps the interval honest when answers to one template are correlated
    (they usually are). With fewer than two clusters there is nothing to resample, so the
    Wilson interval of the pooled counts is returned instead.
    """
    counts = np.array([c for c in clusters if c[1] > 0], dtype=float).reshape(-1, 2)
    if len(counts) < 2:
        k, n = (int(counts[:, 0].sum()), int(counts[:, 1].sum())) if len(counts) else (0, 0)
        return wilson_interval(k, n, level)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(counts), size=(n_boot, len(counts)))
    rates = counts[idx, 0].sum(axis=1) / counts[idx, 1].sum(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(rates, [alpha, 1 - alpha])
    return (float(lo), float(hi))


@dataclass(frozen=True)
class McNemarResult:
    b: int
    """Pairs where the first member was refused and the second was not."""
    c: int
    """Pairs where the second member was refused and the first was not."""
    n: int
    """All usable pairs (concordant and discordant)."""
    delta_r: float
    """(b − c) / n: difference in refusal rate between the two members."""
    index: float
    """(b − c) / (b + c): −1 … 1, share of discordant pairs going one way; 0 when b + c == 0."""
    p_value: float


def mcnemar_exact(b: int, c: int, n: int) -> McNemarResult:
    """Exact McNemar test: two-sided binomial test of b against Binomial(b + c, 1/2)."""
    if b < 0 or c < 0 or n < b + c:
        raise ValueError("need 0 <= b, c and b + c <= n")
    d = b + c
    p = 1.0 if d == 0 else min(1.0, 2.0 * float(sps.binom.cdf(min(b, c), d, 0.5)))
    return McNemarResult(
        b=b,
        c=c,
        n=n,
        delta_r=(b - c) / n if n else 0.0,
        index=(b - c) / d if d else 0.0,
        p_value=p,
    )


@dataclass(frozen=True)
class HomogeneityResult:
    statistic: float
    dof: int
    p_value: float
    method: str
    """'chi2', 'fisher' (2 groups, small counts) or 'permutation' (k groups, small counts)."""


def homogeneity_test(counts: Sequence[tuple[int, int]], *, n_perm: int = 5000, seed: int = 0) -> HomogeneityResult:
    """χ² test that every group has the same refusal rate; ``counts`` is (refused, n) per group.

    When an expected cell count is below 5 the χ² approximation is poor, so two groups fall
    back to Fisher's exact test and more groups to a seeded Monte-Carlo permutation test of
    the same statistic. Groups with n == 0 are ignored; if nobody or everybody refused, the
    rates are trivially equal and p = 1.
    """
    rows = [(k, n - k) for k, n in counts if n > 0]
    if len(rows) < 2:
        return HomogeneityResult(0.0, 0, 1.0, "chi2")
    table = np.array(rows, dtype=float)
    col = table.sum(axis=0)
    if (col == 0).any():
        return HomogeneityResult(0.0, len(rows) - 1, 1.0, "chi2")
    expected = np.outer(table.sum(axis=1), col) / table.sum()
    stat = float(((table - expected) ** 2 / expected).sum())
    dof = len(rows) - 1
    if (expected >= 5).all():
        return HomogeneityResult(stat, dof, float(sps.chi2.sf(stat, dof)), "chi2")
    if len(rows) == 2:
        _, p = sps.fisher_exact(table.astype(int))
        return HomogeneityResult(stat, dof, float(p), "fisher")
    # Permutation test with the margins fixed: under homogeneity the refusals per group follow a
    # multivariate hypergeometric law, sampled directly (much faster than shuffling answers).
    # When the p-value looks small the sample grows, so that a real effect can survive a
    # multiple-testing correction over hundreds of pairwise tests (p can reach 1/105001).
    sizes = table.sum(axis=1).astype(np.int64)
    rng = np.random.default_rng(seed)
    hits, done = 0, 0
    # Row totals are fixed, so the refused and not-refused deviations of a group are equal and
    # opposite: χ² = Σ (r − E_r)² (1/E_r + 1/E_not).
    weight = 1 / expected[:, 0] + 1 / expected[:, 1]
    for batch in (n_perm, 20 * n_perm):
        refused = rng.multivariate_hypergeometric(sizes, int(col[0]), size=batch, method="count")
        stats_ = ((refused - expected[:, 0]) ** 2 * weight).sum(axis=1)
        hits += int((stats_ >= stat - 1e-9).sum())
        done += batch
        if hits >= 20:
            break
    return HomogeneityResult(stat, dof, (hits + 1) / (done + 1), "permutation")


@dataclass(frozen=True)
class WilcoxonResult:
    n: int
    """Pairs with a non-zero difference (zeros are dropped, Wilcoxon's convention)."""
    statistic: float
    """W+, the sum of ranks of positive differences."""
    p_value: float
    effect_size: float
    """Matched-pairs rank-biserial correlation (W+ − W−) / (W+ + W−), −1 … 1."""
    mean_difference: float


def wilcoxon_signed_rank(x: Sequence[float], y: Sequence[float]) -> WilcoxonResult:
    """Two-sided Wilcoxon signed-rank test of x − y with the matched-pairs rank-biserial r."""
    if len(x) != len(y):
        raise ValueError("x and y must have the same length")
    d = np.asarray(x, dtype=float) - np.asarray(y, dtype=float)
    mean_diff = float(d.mean()) if len(d) else 0.0
    nz = d[d != 0]
    if len(nz) == 0:
        return WilcoxonResult(0, 0.0, 1.0, 0.0, mean_diff)
    ranks = sps.rankdata(np.abs(nz))
    w_plus = float(ranks[nz > 0].sum())
    w_minus = float(ranks[nz < 0].sum())
    r = (w_plus - w_minus) / (w_plus + w_minus)
    res = sps.wilcoxon(nz, zero_method="wilcox", alternative="two-sided")
    return WilcoxonResult(len(nz), w_plus, float(res.pvalue), r, mean_diff)


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Cohen's κ between two raters' labels; 1.0 when both are constant and identical."""
    if len(a) != len(b):
        raise ValueError("a and b must have the same length")
    n = len(a)
    if n == 0:
        return float("nan")
    cats = sorted({*a, *b}, key=str)
    p_o = sum(1 for u, v in zip(a, b, strict=True) if u == v) / n
    p_e = sum((list(a).count(k) / n) * (list(b).count(k) / n) for k in cats)
    if p_e >= 1.0:
        return 1.0 if p_o >= 1.0 else 0.0
    return (p_o - p_e) / (1 - p_e)


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni step-down adjusted p-values (monotone, capped at 1), in input order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted

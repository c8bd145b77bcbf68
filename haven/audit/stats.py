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


# --- one group against the pooled rest -----------------------------------------------------------


def fisher_exact_two_sided(k1: int, n1: int, k2: int, n2: int) -> float:
    """Fisher's exact test (two-sided) of k1/n1 against k2/n2: the exact test for unpaired counts."""
    if min(n1, n2) <= 0 or not (0 <= k1 <= n1 and 0 <= k2 <= n2):
        raise ValueError("need 0 <= k <= n and n > 0 for both samples")
    _, p = sps.fisher_exact([[k1, n1 - k1], [k2, n2 - k2]])
    return min(1.0, float(p))


def matched_sets_exact(sets: Sequence[tuple[bool, int, int]]) -> float:
    """Exact conditional test of one member against the rest of matched sets (1 : M matching).

    Each set is ``(member_refused, refused_in_set, set_size)``. Given how many answers of a set were
    refused, under "the member is treated like its mirrors" each of the ``set_size`` answers is equally
    likely to be among the refused, so the member is refused with probability ``refused/size``,
    independently across sets. The number of sets where the member was refused then follows a
    Poisson-binomial law, computed exactly by convolution; the two-sided p sums every outcome no more
    likely than the observed one (Fisher's convention). Sets where nobody or everybody was refused
    carry no information. With sets of two this is exactly the exact McNemar test.
    """
    probs: list[float] = []
    observed = 0
    for refused, total, size in sets:
        if size < 2 or not 0 <= total <= size:
            raise ValueError("each set needs size >= 2 and 0 <= refused <= size")
        if 0 < total < size:
            probs.append(total / size)
            observed += int(refused)
    if not probs:
        return 1.0
    dist = np.array([1.0])
    for p in probs:
        dist = np.convolve(dist, [1.0 - p, p])
    p_obs = dist[observed]
    return float(min(1.0, dist[dist <= p_obs * (1 + 1e-7)].sum()))


def newcombe_difference_ci(k1: int, n1: int, k2: int, n2: int, level: float = 0.95) -> tuple[float, float]:
    """Newcombe's hybrid score interval (method 10, 1998) for p1 − p2, from two Wilson intervals."""
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson_interval(k1, n1, level)
    l2, u2 = wilson_interval(k2, n2, level)
    d = p1 - p2
    lo = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    hi = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return (max(-1.0, lo), min(1.0, hi))


def odds_ratio_ci(a: int, b: int, c: int, d: int, level: float = 0.95) -> tuple[float, float, float]:
    """Odds ratio (a·d)/(b·c) of the table [[a, b], [c, d]] with Woolf's log interval.

    A zero cell would make the ratio 0 or infinite, so then 0.5 is added to every cell
    (Haldane–Anscombe); the ratio stays finite and JSON-safe and its direction stays right.
    """
    if 0 in (a, b, c, d):
        a_, b_, c_, d_ = a + 0.5, b + 0.5, c + 0.5, d + 0.5
    else:
        a_, b_, c_, d_ = float(a), float(b), float(c), float(d)
    log_or = math.log(a_ * d_ / (b_ * c_))
    se = math.sqrt(1 / a_ + 1 / b_ + 1 / c_ + 1 / d_)
    z = float(sps.norm.ppf(0.5 + level / 2))
    return (math.exp(log_or), math.exp(log_or - z * se), math.exp(log_or + z * se))


def shift_exact_test(member: Sequence[int], rest: Sequence[int]) -> float:
    """Exact test that paired differences in {−1, 0, +1} are no larger for ``member`` than for ``rest``.

    Used for group × language: each translated item gives d = refused(lang b) − refused(lang a).
    Under "the group's language gap is the rest's", the member's items are a random draw without
    replacement from all items, so (#+1, #−1) among them is multivariate hypergeometric and the sum
    S = #+1 − #−1 has an exactly enumerable law. Two-sided: outcomes whose |S − E[S]| is at least the
    observed. (A group refused in every language shifts nothing: only differences count.)
    """
    pool = [*member, *rest]
    if any(x not in (-1, 0, 1) for x in pool):
        raise ValueError("differences must be -1, 0 or +1")
    n, m = len(pool), len(member)
    if m == 0 or m == n:
        return 1.0
    plus, minus = pool.count(1), pool.count(-1)
    zero = n - plus - minus
    s_obs = member.count(1) - member.count(-1)
    expected = m * (plus - minus) / n
    total = math.comb(n, m)
    extreme = 0
    for x_plus in range(max(0, m - minus - zero), min(plus, m) + 1):
        for x_minus in range(max(0, m - x_plus - zero), min(minus, m - x_plus) + 1):
            x_zero = m - x_plus - x_minus
            if abs((x_plus - x_minus) - expected) >= abs(s_obs - expected) - 1e-9:
                extreme += math.comb(plus, x_plus) * math.comb(minus, x_minus) * math.comb(zero, x_zero)
    return min(1.0, extreme / total)

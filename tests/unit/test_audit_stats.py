"""The audit statistics against textbook values computed by hand."""

from __future__ import annotations

import math

import pytest

from haven.audit import stats


def test_wilson_interval_matches_textbook_values() -> None:
    lo, hi = stats.wilson_interval(5, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.2366, 0.7634)
    lo, hi = stats.wilson_interval(0, 10)
    # Upper bound for zero successes is z²/(n + z²).
    assert lo == 0.0
    assert hi == pytest.approx(1.959964**2 / (10 + 1.959964**2), abs=1e-5)
    assert stats.wilson_interval(0, 0) == (0.0, 1.0)


def test_exact_mcnemar_is_a_binomial_test_on_discordant_pairs() -> None:
    r = stats.mcnemar_exact(1, 6, 20)
    assert r.p_value == pytest.approx(2 * (1 + 7) / 128)  # 0.125
    assert r.delta_r == pytest.approx((1 - 6) / 20)
    assert r.index == pytest.approx(-5 / 7)
    r = stats.mcnemar_exact(10, 0, 10)
    assert r.p_value == pytest.approx(2 / 1024)
    assert (r.delta_r, r.index) == (1.0, 1.0)
    none = stats.mcnemar_exact(0, 0, 30)
    assert (none.p_value, none.index, none.delta_r) == (1.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        stats.mcnemar_exact(5, 6, 10)


def test_homogeneity_chi2_fisher_and_permutation() -> None:
    r = stats.homogeneity_test([(10, 50), (20, 50)])
    assert r.method == "chi2"
    assert r.statistic == pytest.approx(4.7619, abs=1e-4)
    assert r.p_value == pytest.approx(0.02910, abs=1e-4)
    # Expected counts of 2.5: Fisher's exact test, p = 52/252 by enumerating the hypergeometric table.
    r = stats.homogeneity_test([(1, 5), (4, 5)])
    assert r.method == "fisher"
    assert r.p_value == pytest.approx(52 / 252)
    # Three small groups: permutation; the exact p is 3/495 (all four refusals in one group).
    r = stats.homogeneity_test([(0, 4), (0, 4), (4, 4)], seed=1)
    assert r.method == "permutation"
    assert 0.003 < r.p_value < 0.011
    assert stats.homogeneity_test([(0, 4), (0, 4), (4, 4)], seed=1) == r  # seeded
    assert stats.homogeneity_test([(0, 30), (0, 30)]).p_value == 1.0
    assert stats.homogeneity_test([(3, 30)]).p_value == 1.0


def test_wilcoxon_exact_values_and_rank_biserial() -> None:
    r = stats.wilcoxon_signed_rank(list(range(1, 11)), [0] * 10)
    assert r.statistic == 55
    assert r.p_value == pytest.approx(2 / 1024)
    assert r.effect_size == 1.0
    # d = [1, -2, 3, 4, 5]: W+ = 13, W- = 2, r = 11/15; exact two-sided p = 2 * 3/32.
    r = stats.wilcoxon_signed_rank([1, -2, 3, 4, 5], [0, 0, 0, 0, 0])
    assert r.statistic == 13
    assert r.effect_size == pytest.approx(11 / 15)
    assert r.p_value == pytest.approx(0.1875)
    same = stats.wilcoxon_signed_rank([1, 2, 3], [1, 2, 3])
    assert (same.p_value, same.effect_size, same.n) == (1.0, 0.0, 0)
    with pytest.raises(ValueError):
        stats.wilcoxon_signed_rank([1], [1, 2])


def test_cohen_kappa_textbook_example() -> None:
    # Two raters, 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15 → κ = 0.4.
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert stats.cohen_kappa(a, b) == pytest.approx(0.4)
    assert stats.cohen_kappa(["x", "x"], ["x", "x"]) == 1.0
    assert math.isnan(stats.cohen_kappa([], []))


def test_holm_adjustment() -> None:
    assert stats.holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm_adjust([0.5, 0.9]) == [1.0, 1.0]
    assert stats.holm_adjust([]) == []


def test_bootstrap_over_templates_is_seeded_and_falls_back_to_wilson() -> None:
    clusters = [(0, 10), (10, 10), (5, 10), (2, 10), (8, 10)]
    ci = stats.bootstrap_rate_ci(clusters, seed=3)
    assert ci == stats.bootstrap_rate_ci(clusters, seed=3)
    assert ci[0] < 0.5 < ci[1]
    # Template-level resampling is wider than the Wilson interval of the pooled 25/50 here,
    # because the templates disagree with each other.
    w = stats.wilson_interval(25, 50)
    assert ci[1] - ci[0] > w[1] - w[0]
    assert stats.bootstrap_rate_ci([(3, 10), (3, 10), (3, 10)]) == pytest.approx((0.3, 0.3))
    assert stats.bootstrap_rate_ci([(3, 10)]) == stats.wilson_interval(3, 10)

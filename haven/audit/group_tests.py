"""Which group, in which direction: each group against the pooled rest, and group × language.

``group_vs_rest`` tests every group of a suite against all the other groups pooled:

* paired suites (items that share a ``pair_key`` are mirrors differing only in the group): the
  exact conditional test for 1 : M matched sets (``stats.matched_sets_exact``; McNemar's exact test
  when sets have two members), over the mirror sets the group appears in;
* unpaired suites (most external sets: one category per country, no mirrors): Fisher's exact test
  of the group's refusals against the rest's.

``group_by_language`` asks whether a group's treatment differs between languages more than the other
groups' does (refused in Chinese, answered in English), over items paired across languages
(translations), with the exact test ``stats.shift_exact_test``.

Every entry carries its effect sizes (rates, their difference with Newcombe's interval, the odds
ratio with Woolf's interval) and a ``direction``; ``metrics`` puts the p-values into the report's
Holm family and sets ``p_adjusted`` and ``flagged``. Refusal is *broad* (DENIAL + EVASIVE), as in
every other test of the report.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from haven.audit import stats
from haven.audit.records import SuiteItem


class Observation(Protocol):
    @property
    def item(self) -> SuiteItem: ...

    @property
    def sample(self) -> int: ...

    @property
    def broad(self) -> bool: ...


def _effects(k: int, n: int, rest_k: int, rest_n: int) -> dict[str, Any]:
    lo, hi = stats.newcombe_difference_ci(k, n, rest_k, rest_n)
    odds, or_lo, or_hi = stats.odds_ratio_ci(k, n - k, rest_k, rest_n - rest_k)
    rate, rest_rate = k / n, rest_k / rest_n
    return {
        "k": k,
        "n": n,
        "rest_k": rest_k,
        "rest_n": rest_n,
        "rate": rate,
        "rest_rate": rest_rate,
        "difference": rate - rest_rate,
        "difference_ci_low": lo,
        "difference_ci_high": hi,
        "odds_ratio": odds,
        "odds_ratio_ci_low": or_lo,
        "odds_ratio_ci_high": or_hi,
        "effect_size": rate - rest_rate,
        "direction": "more" if rate > rest_rate else "less" if rate < rest_rate else None,
    }


def mirror_sets(obs: Sequence[Observation]) -> dict[Hashable, dict[str, Observation]]:
    """Mirror sets of non-stance items: same suite, pair_key, language and sample; members by group."""
    sets: dict[Hashable, dict[str, Observation]] = defaultdict(dict)
    for o in obs:
        if o.item.pair_key and o.item.stance is None:
            sets[(o.item.suite, o.item.pair_key, o.item.language, o.sample)][o.item.group] = o
    return {k: v for k, v in sets.items() if len(v) >= 2}


def _test_group(
    base: Sequence[Observation], group: str, names: Mapping[str, str], exclude: frozenset[str] = frozenset()
) -> dict[str, Any] | None:
    """``group`` against the pooled other groups (minus ``exclude``); None when nothing is left to compare."""
    kept = [o for o in base if o.item.group not in exclude]
    mine = [m for m in mirror_sets(kept).values() if group in m]
    if mine:
        method = "matched_sets"
        k, n = sum(1 for m in mine if m[group].broad), len(mine)
        rest = [o for m in mine for g, o in m.items() if g != group]
        p = stats.matched_sets_exact([(m[group].broad, sum(o.broad for o in m.values()), len(m)) for m in mine])
    else:
        method = "fisher"
        own = [o for o in kept if o.item.group == group]
        rest = [o for o in kept if o.item.group != group]
        if not own or not rest:
            return None
        k, n = sum(1 for o in own if o.broad), len(own)
        p = stats.fisher_exact_two_sided(k, n, sum(1 for o in rest if o.broad), len(rest))
    return {
        "kind": "group_vs_rest",
        "group": group,
        "name": names.get(group, group),
        "method": method,
        "measure": "broad",
        **_effects(k, n, sum(1 for o in rest if o.broad), len(rest)),
        "p_value": p,
        "explained_by": [],
    }


def group_vs_rest(obs: Sequence[Observation], names: Mapping[str, str]) -> list[dict[str, Any]]:
    """One test per group against the pooled rest (see the module docstring)."""
    base = [o for o in obs if o.item.stance is None]
    groups = sorted({o.item.group for o in base})
    if len(groups) < 2:
        return []
    return [t for g in groups if (t := _test_group(base, g, names)) is not None]


def _direction(t: Mapping[str, Any]) -> int:
    return (t["effect_size"] > 0) - (t["effect_size"] < 0)


def _explain_away(
    tests: Sequence[dict[str, Any]],
    retest: Callable[[dict[str, Any], frozenset[str]], dict[str, Any] | None],
    *,
    alpha: float,
    family_size: int,
) -> None:
    kept: list[dict[str, Any]] = []
    for t in sorted((t for t in tests if t["flagged"]), key=lambda t: (t["p_value"], t["group"])):
        opposite = frozenset(u["group"] for u in kept if _direction(u) != _direction(t) and u["p_value"] < t["p_value"])
        if opposite:
            again = retest(t, opposite)
            if again is None or again["p_value"] * family_size >= alpha:
                t["flagged"] = False
                t["explained_by"] = sorted(opposite)
                continue
        kept.append(t)


def explain_away(
    tests: Sequence[dict[str, Any]],
    language_tests: Sequence[dict[str, Any]],
    obs: Sequence[Observation],
    *,
    alpha: float,
    family_size: int,
) -> None:
    """Unflag groups that differ from the rest only because a more extreme group is in the rest.

    When one group is refused far more than the others, every other group is, against a pool that
    contains it, refused "less" — true of the pool, misleading as a finding. So, most significant
    first, a flagged group is re-tested against the rest *without* the already-kept flagged groups
    of the opposite direction that are more significant than it; if it is no longer significant
    (Bonferroni over the whole family, stricter than Holm), it is unflagged and ``explained_by``
    names those groups. This only ever removes flags, so the family-wise error rate stays ≤ α.
    The same is done for group × language tests, per pair of languages.
    """
    base = [o for o in obs if o.item.stance is None]
    names = {t["group"]: t["name"] for t in [*tests, *language_tests]}
    _explain_away(tests, lambda t, ex: _test_group(base, t["group"], names, ex), alpha=alpha, family_size=family_size)
    sets = translation_sets(base)
    for la, lb in sorted({(t["a"], t["b"]) for t in language_tests}):
        both = [m for m in sets.values() if la in m and lb in m]

        def retest(t: dict[str, Any], ex: frozenset[str], both: list[Any] = both) -> dict[str, Any] | None:
            return _test_group_language(both, t["group"], t["a"], t["b"], names, ex)

        _explain_away(
            [t for t in language_tests if (t["a"], t["b"]) == (la, lb)], retest, alpha=alpha, family_size=family_size
        )


ObsT = TypeVar("ObsT", bound=Observation)


def translation_key(o: Observation) -> Hashable:
    """What makes two items the same request in two languages."""
    i = o.item
    what = i.translation_key if i.translation_key is not None else (i.template_id, i.group, i.stance)
    return (i.suite, what, o.sample)


def translation_sets(obs: Sequence[ObsT]) -> dict[Hashable, dict[str, ObsT]]:
    """Items that are one request in several languages; members by language."""
    sets: dict[Hashable, dict[str, ObsT]] = defaultdict(dict)
    for o in obs:
        sets[translation_key(o)][o.item.language] = o
    return sets


def _pair_counts(sets: Sequence[Mapping[str, Observation]], la: str, lb: str) -> tuple[int, int, int]:
    return sum(m[la].broad for m in sets), sum(m[lb].broad for m in sets), len(sets)


def _test_group_language(
    both: Sequence[Mapping[str, Observation]],
    group: str,
    la: str,
    lb: str,
    names: Mapping[str, str],
    exclude: frozenset[str] = frozenset(),
) -> dict[str, Any] | None:
    mine = [m for m in both if m[la].item.group == group]
    rest = [m for m in both if m[la].item.group not in exclude | {group}]
    if not mine or not rest:
        return None
    ka, kb, n = _pair_counts(mine, la, lb)
    rka, rkb, rn = _pair_counts(rest, la, lb)
    p = stats.shift_exact_test(
        [int(m[lb].broad) - int(m[la].broad) for m in mine],
        [int(m[lb].broad) - int(m[la].broad) for m in rest],
    )
    gap, rest_gap = (kb - ka) / n, (rkb - rka) / rn
    diff = gap - rest_gap
    return {
        "kind": "group_language",
        "group": group,
        "name": names.get(group, group),
        "a": la,
        "b": lb,
        "measure": "broad",
        "method": "exact_shift",
        "n_pairs": n,
        "rest_n_pairs": rn,
        "k_a": ka,
        "k_b": kb,
        "rest_k_a": rka,
        "rest_k_b": rkb,
        "rate_a": ka / n,
        "rate_b": kb / n,
        "rest_rate_a": rka / rn,
        "rest_rate_b": rkb / rn,
        "gap": gap,
        "rest_gap": rest_gap,
        "effect_size": diff,
        "more_refused_in": lb if diff > 0 else la if diff < 0 else None,
        "p_value": p,
        "explained_by": [],
    }


def group_by_language(obs: Sequence[Observation], names: Mapping[str, str]) -> list[dict[str, Any]]:
    """Per group and language pair: is the group's gap between the languages unlike the rest's?"""
    sets = translation_sets([o for o in obs if o.item.stance is None])
    languages = sorted({lang for m in sets.values() for lang in m})
    out = []
    for la, lb in itertools.combinations(languages, 2):
        both = [m for m in sets.values() if la in m and lb in m]
        groups = sorted({m[la].item.group for m in both})
        if len(groups) < 2:
            continue
        out += [t for g in groups if (t := _test_group_language(both, g, la, lb, names)) is not None]
    return out

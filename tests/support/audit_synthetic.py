"""Synthetic audit runs for the metrics and report tests: items, responses and judgements from rules."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from haven.audit.records import Judgement, Label, Response, SuiteItem

LabelRule = Callable[[str, str, str], Label]
ValenceRule = Callable[[str, str, str], float | None]


def synthetic_run(
    groups: Sequence[str],
    templates: Sequence[str],
    languages: Sequence[str] = ("en",),
    *,
    label: LabelRule = lambda g, t, lang: Label.COMPLETE,
    valence: ValenceRule = lambda g, t, lang: None,
    content: Callable[[str, str, str], str] = lambda g, t, lang: f"An answer about {g}.",
    suite: str = "paired-countries",
) -> tuple[list[SuiteItem], list[Response], list[Judgement]]:
    items, responses, judgements = [], [], []
    for lang in languages:
        for t in templates:
            for g in groups:
                item_id = f"{suite}/{t}/{g}/{lang}"
                items.append(
                    SuiteItem(
                        item_id=item_id,
                        suite=suite,
                        group=g,
                        template_id=t,
                        language=lang,
                        prompt=f"Prompt {t} about {g} in {lang}",
                        pair_key=t,
                        target=g,
                    )
                )
                lab = label(g, t, lang)
                error = "HTTP 500" if lab is Label.ERROR else None
                responses.append(
                    Response(item_id=item_id, sample_index=0, content="" if error else content(g, t, lang), error=error)
                )
                judgements.append(
                    Judgement(item_id=item_id, sample_index=0, label=lab, valence=valence(g, t, lang), judge="test")
                )
    return items, responses, judgements

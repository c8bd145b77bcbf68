"""Detectors an operator plugs in: what Haven does not detect itself (personal names above all).

A plug-in is an installed Python package that declares an entry point in the group ``haven.redaction.detectors``;
the entry point's name is the placeholder type (``PERSON`` gives ``[PERSON_1]``) and its object is either a
:class:`~haven.redaction.detectors.Detector` or a finder: a function that takes a text and yields the
``(start, end)`` of each value in it. For example, in the plug-in's ``pyproject.toml``::

    [project.entry-points."haven.redaction.detectors"]
    PERSON = "my_ner_hook:find_people"

Plug-ins run after Haven's own detectors (which win overlaps) wherever text is masked: chats to remote upstreams,
external audit targets and judges, and stored turns with ``outbound+storage``. They run in the Haven process with
its rights, so install only code you trust; a plug-in that cannot be loaded, or that raises, stops the request
rather than letting it leave unmasked.
"""

from __future__ import annotations

import functools
import re
from importlib.metadata import entry_points

from haven.errors import ConfigurationError
from haven.redaction.detectors import DETECTORS, Detector

ENTRY_POINT_GROUP = "haven.redaction.detectors"
_KIND = re.compile(r"[A-Z][A-Z_]{0,23}")


def plugged_in() -> tuple[Detector, ...]:
    """The detectors installed packages declare, in entry-point name order; a clear error for a broken one."""
    found: list[Detector] = []
    for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: (p.name, p.value)):
        if not _KIND.fullmatch(point.name):
            raise ConfigurationError(f"redaction plug-in {point.value!r}: its name {point.name!r} must be an "
                                     "upper-case placeholder type such as PERSON (A-Z and _, at most 24)")
        try:
            loaded = point.load()
        except Exception as exc:  # any import error of third-party code: one readable line, nothing leaves
            raise ConfigurationError(f"redaction plug-in {point.name} ({point.value}) cannot be loaded: "
                                     f"{type(exc).__name__}: {exc}") from exc
        if isinstance(loaded, Detector):
            found.append(loaded)
        elif callable(loaded):
            found.append(Detector(point.name, loaded, checksum=False))
        else:
            raise ConfigurationError(f"redaction plug-in {point.name} ({point.value}) is neither a Detector "
                                     "nor a function of a text")
    return tuple(found)


@functools.cache
def active_detectors() -> tuple[Detector, ...]:
    """Haven's detectors, then the plug-ins (read once per process)."""
    return (*DETECTORS, *plugged_in())

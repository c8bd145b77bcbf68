"""``haven doctor``'s checks: what this installation exposes, where its data can go, and whether it is intact.

Each check returns :class:`~haven.doctor.checks.Finding` lines (ok / warn / fail, what was seen, how to fix
it); :func:`~haven.doctor.checks.run_checks` runs them all. Pure reads: a check never changes anything.
"""

from haven.doctor.checks import Finding, run_checks

__all__ = ["Finding", "run_checks"]

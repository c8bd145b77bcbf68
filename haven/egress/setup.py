"""Build the process's egress policy from the settings, and install it (``haven serve`` calls this first)."""

from __future__ import annotations

from collections.abc import Sequence

from haven.egress.guard import EgressGuard, Reporter, install_guard
from haven.egress.policy import EgressPolicy
from haven.settings import Settings


def policy_from_settings(settings: Settings, configured: Sequence[str] = ()) -> EgressPolicy:
    """A clear ConfigurationError for a malformed destination, before the server binds.

    ``configured``: destinations Haven is configured to use (its remote upstreams, ``host:port``), allowed in
    every mode; ``haven doctor`` names each one that is not on this machine."""
    return EgressPolicy.from_strings(settings.egress, settings.egress_allow, configured)


def guard_process(settings: Settings, reporters: list[Reporter] | None = None,
                  configured: Sequence[str] = ()) -> EgressGuard:
    return install_guard(policy_from_settings(settings, configured), reporters)

"""Build the process's egress policy from the settings, and install it (``haven serve`` calls this first)."""

from __future__ import annotations

from haven.egress.guard import EgressGuard, Reporter, install_guard
from haven.egress.policy import EgressPolicy
from haven.settings import Settings


def policy_from_settings(settings: Settings) -> EgressPolicy:
    """A clear ConfigurationError for a malformed destination, before the server binds."""
    return EgressPolicy.from_strings(settings.egress, settings.egress_allow)


def guard_process(settings: Settings, reporters: list[Reporter] | None = None) -> EgressGuard:
    return install_guard(policy_from_settings(settings), reporters)

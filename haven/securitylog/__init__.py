"""The security log: an append-only, hash-chained record of security-relevant actions (never content).

Other layers record an event with :func:`record` (see :mod:`haven.securitylog.log`).
"""

from haven.securitylog.log import EVENTS, LogEntry, SecurityLog, record, verify

__all__ = ["EVENTS", "LogEntry", "SecurityLog", "record", "verify"]

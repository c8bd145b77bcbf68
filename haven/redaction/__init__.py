"""PII and secret redaction at the boundary: typed placeholders out, original values back in.

Before a request leaves the machine (a remote upstream, an external audit target) and, if configured, before
it is stored, :class:`~haven.redaction.redactor.Redactor` replaces detected personal data and secrets with
typed placeholders (``[EMAIL_1]``); the reply's placeholders are restored for the user, so the remote model
never sees the values. Detection is offline and validated (checksums where the format has one); see
:mod:`haven.redaction.detectors`. Knows nothing about HTTP, storage or models.
"""

from haven.redaction.detectors import DETECTORS, Detector, Span, find_spans
from haven.redaction.plugins import ENTRY_POINT_GROUP, active_detectors
from haven.redaction.redactor import Redaction, Redactor, StreamRestorer

__all__ = ["DETECTORS", "ENTRY_POINT_GROUP", "Detector", "Redaction", "Redactor", "Span", "StreamRestorer",
           "active_detectors", "find_spans"]

"""FailureReason, as every failed object shows it."""

from __future__ import annotations

#: SageMaker's FailureReason holds at most this many characters.
FAILURE_REASON_LIMIT = 1024
_GAP = " … "


def fit_failure_reason(reason: str) -> str:
    """`reason` cut to what a FailureReason holds. The start says what failed and the end
    is where an instance's log tail says why, so a long reason keeps both and drops the
    middle."""
    limit = FAILURE_REASON_LIMIT
    if len(reason) <= limit:
        return reason
    head = limit // 4
    return reason[:head] + _GAP + reason[-(limit - head - len(_GAP)) :]

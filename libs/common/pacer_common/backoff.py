"""Failure backoff for baseline intervals: pure arithmetic, no clock."""

from __future__ import annotations

MAX_BACKOFF_EXPONENT = 5


def backoff_multiplier(failure_count: int) -> int:
    """Return the factor for a baseline interval after `failure_count` consecutive failures.

    2 ** failure_count, capped at 2 ** MAX_BACKOFF_EXPONENT (32x): 1, 2, 4, 8, 16, 32, 32, ...
    A negative count is treated as zero.
    """
    return int(2 ** min(max(failure_count, 0), MAX_BACKOFF_EXPONENT))

"""Waiting for something to happen without sleeping on the wall clock: poll a condition until a deadline.

`eventually` is for async tests (the condition may be a plain function or a coroutine function); `wait_for` is
its blocking twin for tests that run no event loop (end-to-end tests against real processes).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable

DEFAULT_TIMEOUT_S = 10.0


async def _holds(condition: Callable[[], object]) -> bool:
    result = condition()
    return bool(await result if inspect.isawaitable(result) else result)


async def eventually(
    condition: Callable[[], object], what: str = "condition", timeout_s: float = DEFAULT_TIMEOUT_S, poll_s: float = 0.01
) -> None:
    """Poll `condition()` (awaited when it returns an awaitable) until it is truthy, yielding `poll_s` between
    tries (0: just let other tasks run); AssertionError naming `what` once `timeout_s` passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await _holds(condition):
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(poll_s)


def wait_for(predicate: Callable[[], object], deadline_s: float, what: str, poll_s: float = 0.05) -> None:
    """Poll `predicate()` until it is truthy, blocking; AssertionError naming `what` after `deadline_s`."""
    give_up = time.monotonic() + deadline_s
    while time.monotonic() < give_up:
        if predicate():
            return
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {deadline_s} s waiting for {what}")

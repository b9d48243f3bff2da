"""The event loop every asyncio service runs on: uvloop by default (the same work for less CPU), or the standard
library's (`PACER_EVENT_LOOP=asyncio`) to rule uvloop out when chasing a problem."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Final, TypeVar

import uvloop

from pacer_common.settings import SettingsError

EVENT_LOOPS: Final = ("uvloop", "asyncio")
T = TypeVar("T")


def check_event_loop(event_loop: str) -> None:
    """Refuse a `PACER_EVENT_LOOP` that names no loop, when the settings are read rather than at start."""
    if event_loop not in EVENT_LOOPS:
        raise SettingsError(f"PACER_EVENT_LOOP={event_loop} must be one of {', '.join(EVENT_LOOPS)}")


def run_on_loop(main: Coroutine[Any, Any, T], event_loop: str) -> T:
    """Run `main` to completion on the event loop the settings chose."""
    factory = uvloop.new_event_loop if event_loop == "uvloop" else None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)

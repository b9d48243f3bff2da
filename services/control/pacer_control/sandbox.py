"""CEL conditions evaluated in a child process, each under a deadline.

CEL evaluation holds the GIL for as long as it runs, and a short expression can run for seconds (a nested
comprehension over a large body), so neither a thread nor a timer in this process could stop it. The child process
can be: when an evaluation overruns its deadline the child is killed, the evaluation is reported as an error, and a
new child is started for the next one. The child only ever compiles and evaluates; it holds no database connection,
no secret and no socket.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Final

import cel

log = logging.getLogger("pacer.control.sandbox")

STARTUP_TIMEOUT_S: Final = 30.0
MAX_ERROR_CHARS: Final = 300
MAX_CACHED_PROGRAMS: Final = 1000
IDLE_S: Final = 60.0


@dataclass(frozen=True)
class Verdict:
    """A condition's value on one activation: `held` when it yielded a bool, else `error` says why not."""

    held: bool | None
    error: str = ""
    timed_out: bool = False


def _short(message: str) -> str:
    return message if len(message) <= MAX_ERROR_CHARS else message[: MAX_ERROR_CHARS - 3] + "..."


def _serve(connection: Connection) -> None:
    """The child's loop: (expression, variables) in, ("ok", bool) or ("error", message) out."""
    programs: dict[str, Any] = {}
    connection.send(("ready", None))
    while True:
        try:
            expression, variables = connection.recv()
        except EOFError:
            return
        try:
            program = programs.get(expression)
            if program is None:
                if len(programs) >= MAX_CACHED_PROGRAMS:
                    programs.clear()
                program = programs[expression] = cel.compile(expression)
            context = cel.Context()
            for name, value in variables.items():
                context.add_variable(name, value)
            value = program.execute(context)
            if isinstance(value, bool):
                reply: tuple[str, object] = ("ok", value)
            else:
                reply = ("error", f"the condition must yield a bool, not {type(value).__name__}")
        except Exception as error:  # noqa: BLE001 - every evaluation error is the condition's, and is reported
            reply = ("error", _short(str(error) or type(error).__name__))
        connection.send(reply)


class Sandbox:
    """One child process evaluating conditions one at a time; thread-safe (callers queue on a lock).

    The child starts on first use and stops after `idle_s` without an evaluation, so a sandbox costs no process
    while no rule is evaluated.
    """

    def __init__(self, deadline_ms: int, idle_s: float = IDLE_S) -> None:
        self.deadline_ms = deadline_ms
        self._idle_s = idle_s
        self._lock = threading.Lock()
        self._context = multiprocessing.get_context("spawn")
        self._process: BaseProcess | None = None
        self._connection: Connection | None = None
        self._used_at = 0.0
        self._watcher: threading.Thread | None = None

    def evaluate(self, expression: str, variables: dict[str, Any]) -> Verdict:
        """The condition's value on `variables`; an error, or a timeout after `deadline_ms`, as a Verdict."""
        with self._lock:
            connection = self._started()
            self._used_at = time.monotonic()
            try:
                connection.send((expression, variables))
                if not connection.poll(self.deadline_ms / 1000):
                    self._stop()
                    log.warning("condition overran its deadline", extra={"event": "policy.timeout"})
                    return Verdict(None, f"took longer than {self.deadline_ms} ms", timed_out=True)
                status, value = connection.recv()
            except (EOFError, OSError) as error:
                self._stop()
                return Verdict(None, f"the evaluator stopped ({type(error).__name__})")
            return Verdict(value, "") if status == "ok" else Verdict(None, str(value))

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _started(self) -> Connection:
        if self._connection is not None and self._process is not None and self._process.is_alive():
            return self._connection
        self._stop()
        ours, theirs = self._context.Pipe()
        process = self._context.Process(target=_serve, args=(theirs,), name="pacer-conditions", daemon=True)
        process.start()
        theirs.close()
        if not ours.poll(STARTUP_TIMEOUT_S):
            process.kill()
            raise RuntimeError("the condition evaluator did not start")
        ours.recv()
        self._process, self._connection = process, ours
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._stop_when_idle, name="sandbox-idle", daemon=True)
            self._watcher.start()
        return ours

    def _stop_when_idle(self) -> None:
        while True:
            time.sleep(self._idle_s / 4)
            with self._lock:
                if self._process is not None and time.monotonic() - self._used_at < self._idle_s:
                    continue
                self._stop()
                self._watcher = None
                return

    def _stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join(5)
        if self._connection is not None:
            self._connection.close()
        self._process = self._connection = None

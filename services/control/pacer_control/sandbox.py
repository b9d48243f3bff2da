"""CEL conditions evaluated in a child process, each under a deadline.

CEL evaluation holds the GIL for as long as it runs, and a short expression can run for seconds (a nested
comprehension over a large body), so neither a thread nor a timer in this process could stop it. The child process
can be: when an evaluation overruns its deadline the child is killed, the evaluation is reported as an error, and a
new child is started for the next one.

The child is `python -m pacer_control.sandbox`: it imports this module and the CEL package only (no gRPC, no database,
no secret, no socket), so it starts in a fraction of a second, and it speaks JSON lines on its standard input and
output: `{"when": ..., "variables": ...}` in, `{"held": bool}` or `{"error": message}` out. It exits when its input
closes, so it never outlives the control plane.
"""

from __future__ import annotations

import json
import logging
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Any, Final

import cel

log = logging.getLogger("pacer.control.sandbox")

STARTUP_TIMEOUT_S: Final = 30.0
MAX_ERROR_CHARS: Final = 300
MAX_CACHED_PROGRAMS: Final = 1000
IDLE_S: Final = 300.0
_READY: Final = '{"ready": true}'


@dataclass(frozen=True)
class Verdict:
    """A condition's value on one activation: `held` when it yielded a bool, else `error` says why not."""

    held: bool | None
    error: str = ""
    timed_out: bool = False
    # The condition evaluated to a value that is not a bool.
    not_bool: bool = False


def _short(message: str) -> str:
    return message if len(message) <= MAX_ERROR_CHARS else message[: MAX_ERROR_CHARS - 3] + "..."


def evaluate_here(programs: dict[str, Any], when: str, variables: dict[str, Any]) -> dict[str, Any]:
    """One evaluation, in the child: the reply to send."""
    try:
        program = programs.get(when)
        if program is None:
            if len(programs) >= MAX_CACHED_PROGRAMS:
                programs.clear()
            program = programs[when] = cel.compile(when)
        context = cel.Context()
        for name, value in variables.items():
            context.add_variable(name, value)
        value = program.execute(context)
    except Exception as error:  # noqa: BLE001 - every evaluation error is the condition's, and is reported
        return {"error": _short(str(error) or type(error).__name__)}
    if isinstance(value, bool):
        return {"held": value}
    return {"error": f"the condition must yield a bool, not {type(value).__name__}", "not_bool": True}


def serve(source: IO[str], sink: IO[str]) -> None:
    """The child's loop, until its input closes."""
    programs: dict[str, Any] = {}
    sink.write(_READY + "\n")
    sink.flush()
    for line in source:
        asked = json.loads(line)
        sink.write(json.dumps(evaluate_here(programs, asked["when"], asked["variables"])) + "\n")
        sink.flush()


class Sandbox:
    """One child process evaluating conditions one at a time; thread-safe (callers queue on a lock).

    The child starts on first use and stops after `idle_s` without an evaluation, so a sandbox costs no process
    while no rule is evaluated.
    """

    def __init__(self, deadline_ms: int, idle_s: float = IDLE_S) -> None:
        self.deadline_ms = deadline_ms
        self._idle_s = idle_s
        self._lock = threading.Lock()
        self._child: subprocess.Popen[str] | None = None
        self._used_at = 0.0
        self._watcher: threading.Thread | None = None

    def evaluate(self, when: str, variables: dict[str, Any]) -> Verdict:
        """The condition's value on `variables`; an error, or a timeout after `deadline_ms`, as a Verdict."""
        with self._lock:
            child = self._started()
            self._used_at = time.monotonic()
            assert child.stdin is not None
            assert child.stdout is not None
            try:
                child.stdin.write(json.dumps({"when": when, "variables": variables}) + "\n")
                child.stdin.flush()
                readable, _, _ = select.select([child.stdout], [], [], self.deadline_ms / 1000)
                if not readable:
                    self._stop()
                    log.warning("condition overran its deadline", extra={"event": "policy.timeout"})
                    return Verdict(None, f"took longer than {self.deadline_ms} ms", timed_out=True)
                reply = json.loads(child.stdout.readline() or "{}")
            except (OSError, ValueError) as error:
                self._stop()
                return Verdict(None, f"the evaluator stopped ({type(error).__name__})")
            if "held" in reply:
                return Verdict(bool(reply["held"]))
            return Verdict(None, str(reply.get("error", "the evaluator stopped")), not_bool=bool(reply.get("not_bool")))

    def start(self) -> None:
        """Start the child now rather than on the first evaluation."""
        with self._lock:
            self._started()
            self._used_at = time.monotonic()

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _started(self) -> subprocess.Popen[str]:
        if self._child is not None and self._child.poll() is None:
            return self._child
        self._stop()
        child = subprocess.Popen(
            [sys.executable, "-m", "pacer_control.sandbox"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], STARTUP_TIMEOUT_S)
        if not ready or child.stdout.readline().strip() != _READY:
            child.kill()
            child.wait()
            raise RuntimeError("the condition evaluator did not start")
        self._child = child
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._stop_when_idle, name="sandbox-idle", daemon=True)
            self._watcher.start()
        return child

    def _stop_when_idle(self) -> None:
        while True:
            time.sleep(min(self._idle_s / 4, 30.0))
            with self._lock:
                if self._child is not None and time.monotonic() - self._used_at < self._idle_s:
                    continue
                self._stop()
                self._watcher = None
                return

    def _stop(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        child.kill()
        child.wait(5)
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()


if __name__ == "__main__":
    serve(sys.stdin, sys.stdout)

"""Run Pacer on this machine: control plane, scheduler, one executor and the REST gateway as separate processes.

Started by `make run`. Prints where each service listens, then one readable line per log event (a line per
finished run among them); Ctrl-C (or SIGTERM) stops the executor, the scheduler and the control plane, in that
order, each draining cleanly.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import IO

from pacer_common.processes import ServiceProcess, StartError, answers_http, stop_in_order
from pacer_common.settings import process_environment

DEFAULTS = {
    "PACER_DATABASE_URL": "sqlite:///var/pacer.db",
    "PACER_VAR_DIR": "var",
    "PACER_LISTEN_ADDR": "127.0.0.1:50051",
    "PACER_CONTROL_ADDR": "127.0.0.1:50051",
    "PACER_SCHEDULER_ADDR": "127.0.0.1:50052",
    "PACER_SCHEDULER_ADDRS": "127.0.0.1:50052",
    "PACER_EGRESS_ALLOW": "loopback",  # the embedded dev profile may call services on this machine
    "PACER_GATEWAY_ADDR": "127.0.0.1:8080",
    "PACER_LOG_RUNS": "true",  # on this machine, every run is a line of the console
}
QUIET_KEYS = {"time", "level", "logger", "message", "event"}
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 40.0


def readable(name: str, raw: str) -> str:
    """One log line of a service, made readable; run results get a compact form of their own."""
    try:
        line = json.loads(raw)
    except ValueError:
        return f"{name:<9} {raw}"
    stamp = str(line.get("time", ""))[11:23]
    if line.get("event") == "run.finished":
        status = f"{line.get('status', '?')} {line.get('http_status') or ''}".strip()
        where = f"{line.get('endpoint_id', '')} {line.get('run_id', '')}"
        return f"{stamp} run       {status:<12} {line.get('duration_ms', 0):>6} ms  {where}"
    extra = " ".join(f"{k}={v}" for k, v in line.items() if k not in QUIET_KEYS)
    return f"{stamp} {name:<9} {line.get('message', '')}  {extra}".rstrip()


def relay(name: str, stream: IO[bytes]) -> None:
    for raw in iter(stream.readline, b""):
        print(readable(name, raw.decode(errors="replace").rstrip()), flush=True)


def start(name: str, command: str, env: dict[str, str]) -> ServiceProcess:
    # A session of its own: Ctrl-C reaches only this launcher, which then stops the services in a safe order.
    service = ServiceProcess(command, env, name=name, own_session=True)
    assert service.process.stdout is not None
    threading.Thread(target=relay, args=(name, service.process.stdout), daemon=True).start()
    return service


def wait_up(name: str, service: ServiceProcess, env: dict[str, str], addr: str | None) -> None:
    """Wait until `service` is up: the gateway answers /healthz, a gRPC service at `addr` says SERVING."""
    if name == "gateway":
        url = f"http://{env['PACER_GATEWAY_ADDR']}/healthz"
        service.wait_until(lambda: answers_http(url), "healthy", START_TIMEOUT_S)
    elif addr is not None:
        service.wait_serving(addr, START_TIMEOUT_S)


STOP_ORDER = ("gateway", "scheduler", "executor", "control")  # the scheduler drains through live executors


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    env = {**DEFAULTS, **process_environment()}
    Path(env["PACER_VAR_DIR"]).mkdir(parents=True, exist_ok=True)
    services = [
        ("control", "pacer-control", env["PACER_LISTEN_ADDR"]),
        ("scheduler", "pacer-scheduler", env["PACER_SCHEDULER_ADDR"]),
        ("executor", "pacer-executor", None),
        ("gateway", "pacer-gateway", None),
    ]
    processes: dict[str, ServiceProcess] = {}
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        for name, command, addr in services:
            processes[name] = start(name, command, env)
            wait_up(name, processes[name], env, addr)
        key_file = Path(env["PACER_VAR_DIR"]) / "dev-api-key"
        print(
            f"\nPacer is running: control plane (gRPC API) on {env['PACER_LISTEN_ADDR']}, "
            f"REST on http://{env['PACER_GATEWAY_ADDR']}, scheduler on {env['PACER_SCHEDULER_ADDR']}, one executor.\n"
            f"Console on http://{env['PACER_GATEWAY_ADDR']}/ (sign in with the key in {key_file}).\n"
            f"Database {env['PACER_DATABASE_URL']}; dev API key in {key_file}. Ctrl-C stops everything.\n",
            flush=True,
        )
        while all(p.process.poll() is None for p in processes.values()):
            time.sleep(0.5)
        print("a service exited; stopping the others", file=sys.stderr)
        return 1
    except StartError as error:
        print(f"{error}; see its log lines above", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping…", flush=True)
        return 0
    finally:
        stop_in_order(processes, STOP_ORDER, STOP_TIMEOUT_S)


if __name__ == "__main__":
    sys.exit(main())

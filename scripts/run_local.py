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
# Each service's own Prometheus and health-only ports, so a second stack on the same machine only has to move them:
# PACER_<SERVICE>_METRICS_ADDR and PACER_<SERVICE>_HEALTH_ADDR (empty turns one off) override these defaults.
SERVICE_PORTS = {
    "control": {"METRICS": "127.0.0.1:9464", "HEALTH": ""},
    "scheduler": {"METRICS": "127.0.0.1:9465", "HEALTH": ""},
    "executor": {"METRICS": "127.0.0.1:9466", "HEALTH": "127.0.0.1:50053"},
    "gateway": {"METRICS": "127.0.0.1:9467"},
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


class SettingError(Exception):
    """A setting that cannot work when one environment starts several services."""


def service_environment(name: str, env: dict[str, str]) -> dict[str, str]:
    """`env` for one service: its own metrics and health ports from PACER_<SERVICE>_*_ADDR or the defaults.

    A shared PACER_METRICS_ADDR or PACER_HEALTH_ADDR would be bound by every service, and all but the first would fail
    to start; empty, it turns that port off in all of them.
    """
    ports = SERVICE_PORTS.get(name)
    if ports is None:
        return env
    own = dict(env)
    for kind, default in ports.items():
        shared = env.get(f"PACER_{kind}_ADDR")
        if shared:
            raise SettingError(
                f"PACER_{kind}_ADDR={shared} would be bound by every service: set "
                + ", ".join(f"PACER_{other.upper()}_{kind}_ADDR" for other in SERVICE_PORTS)
                + " instead (empty turns one off)"
            )
        own[f"PACER_{kind}_ADDR"] = env.get(f"PACER_{name.upper()}_{kind}_ADDR", "" if shared == "" else default)
    return own


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
            processes[name] = start(name, command, service_environment(name, env))
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
    except SettingError as error:
        print(error, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nstopping…", flush=True)
        return 0
    finally:
        stop_in_order(processes, STOP_ORDER, STOP_TIMEOUT_S)


if __name__ == "__main__":
    sys.exit(main())

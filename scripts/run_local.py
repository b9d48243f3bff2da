"""Run Pacer on this machine: control plane, scheduler, one executor and the REST gateway as separate processes.

Started by `make run`. Prints where each service listens, then one readable line per log event (a line per
finished run among them); Ctrl-C (or SIGTERM) stops the executor, the scheduler and the control plane, in that
order, each draining cleanly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

BIN = Path(sys.executable).parent
DEFAULTS = {
    "PACER_DATABASE_URL": "sqlite:///var/pacer.db",
    "PACER_VAR_DIR": "var",
    "PACER_LISTEN_ADDR": "127.0.0.1:50051",
    "PACER_CONTROL_ADDR": "127.0.0.1:50051",
    "PACER_SCHEDULER_ADDR": "127.0.0.1:50052",
    "PACER_SCHEDULER_ADDRS": "127.0.0.1:50052",
    "PACER_EGRESS_ALLOW": "loopback",  # the embedded dev profile may call services on this machine
    "PACER_GATEWAY_ADDR": "127.0.0.1:8080",
}
QUIET_KEYS = {"time", "level", "logger", "message", "event"}


def wait_serving(addr: str, process: subprocess.Popen[bytes], deadline_s: float = 60.0) -> bool:
    give_up = time.monotonic() + deadline_s
    with grpc.insecure_channel(addr) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < give_up and process.poll() is None:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError:
                time.sleep(0.2)
    return False


def wait_http(addr: str, process: subprocess.Popen[bytes], deadline_s: float = 60.0) -> bool:
    give_up = time.monotonic() + deadline_s
    while time.monotonic() < give_up and process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://{addr}/healthz", timeout=1) as answer:
                return bool(answer.status == 200)
        except OSError:
            time.sleep(0.2)
    return False


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


def start(name: str, command: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    # A session of its own: Ctrl-C reaches only this launcher, which then stops the services in a safe order.
    process = subprocess.Popen(
        [str(BIN / command)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    assert process.stdout is not None
    threading.Thread(target=relay, args=(name, process.stdout), daemon=True).start()
    return process


STOP_ORDER = ("gateway", "scheduler", "executor", "control")  # the scheduler drains through live executors


def stop_all(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    for name in STOP_ORDER:
        process = processes.get(name)
        if process is None:
            continue
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    env = {**DEFAULTS, **os.environ}
    Path(env["PACER_VAR_DIR"]).mkdir(parents=True, exist_ok=True)
    services = [
        ("control", "pacer-control", env["PACER_LISTEN_ADDR"]),
        ("scheduler", "pacer-scheduler", env["PACER_SCHEDULER_ADDR"]),
        ("executor", "pacer-executor", None),
        ("gateway", "pacer-gateway", None),
    ]
    processes: dict[str, subprocess.Popen[bytes]] = {}
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        for name, command, addr in services:
            process = start(name, command, env)
            processes[name] = process
            started = wait_http(env["PACER_GATEWAY_ADDR"], process) if name == "gateway" else True
            if not started or (addr is not None and not wait_serving(addr, process)):
                print(f"{name} did not start; see its log lines above", file=sys.stderr)
                return 1
        key_file = Path(env["PACER_VAR_DIR"]) / "dev-api-key"
        print(
            f"\nPacer is running: control plane (gRPC API) on {env['PACER_LISTEN_ADDR']}, "
            f"REST on http://{env['PACER_GATEWAY_ADDR']}, scheduler on {env['PACER_SCHEDULER_ADDR']}, one executor.\n"
            f"Database {env['PACER_DATABASE_URL']}; dev API key in {key_file}. Ctrl-C stops everything.\n",
            flush=True,
        )
        while all(p.poll() is None for p in processes.values()):
            time.sleep(0.5)
        print("a service exited; stopping the others", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping…", flush=True)
        return 0
    finally:
        stop_all(processes)


if __name__ == "__main__":
    sys.exit(main())

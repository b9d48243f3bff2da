"""All of Pacer as real processes for end-to-end tests: control, schedulers and executors, on one database, and on
request the REST gateway and the MCP server (over HTTP) in front of the control plane.

Every process gets free ports for its metrics (and an executor for its health server), kept in `metrics_addrs`
and `health_addrs` by service name, so stacks never collide on the services' fixed default ports.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import grpc

from pacer.control.v1 import control_service_pb2 as pb
from tests.support.harness import Client
from tests.support.processes import ServiceProcess, free_addr, start_control, start_listener, start_service

# Short timings so lease expiry and reaping happen within a test's patience.
CONTROL_ENV = {"PACER_LEASE_GRACE_MS": "1500", "PACER_REAPER_INTERVAL_MS": "200", "PACER_LOG_LEVEL": "INFO"}
SCHEDULER_ENV = {"PACER_CLAIM_INTERVAL_MS": "100", "PACER_CLAIM_HORIZON_MS": "1000", "PACER_RESULT_FLUSH_MS": "20"}


class Stack:
    """A running Pacer: `client` speaks the public API with the dev tenant's key."""

    def __init__(
        self,
        tmp: Path,
        database_url: str,
        control_env: Mapping[str, str] | None = None,
        client_credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        """Start the control plane; `client_credentials` make `client` speak TLS to it (plaintext when None)."""
        self.tmp = tmp
        self.database_url = database_url
        self.var = tmp / "var"
        self.metrics_addrs: dict[str, str] = {"control": free_addr()}
        self.health_addrs: dict[str, str] = {}
        self._control_env = {
            **CONTROL_ENV,
            "PACER_METRICS_ADDR": self.metrics_addrs["control"],
            **(control_env or {}),
        }
        self.control, self.control_addr = start_control(tmp, database_url, env=self._control_env)
        self.schedulers: dict[str, tuple[ServiceProcess, str]] = {}
        self.executors: dict[str, ServiceProcess] = {}
        self.frontends: dict[str, ServiceProcess] = {}
        self._settings: dict[str, dict[str, str]] = {}
        self._channel = (
            grpc.insecure_channel(self.control_addr)
            if client_credentials is None
            else grpc.secure_channel(self.control_addr, client_credentials)
        )
        self.client = Client(self._channel, (self.var / "dev-api-key").read_text().strip())

    def add_scheduler(self, name: str = "scheduler", env: Mapping[str, str] | None = None) -> str:
        addr = free_addr()
        self.metrics_addrs[name] = free_addr()
        settings = {
            **SCHEDULER_ENV,
            "PACER_SCHEDULER_ADDR": addr,
            "PACER_CONTROL_ADDR": self.control_addr,
            "PACER_VAR_DIR": str(self.var),
            "PACER_SCHEDULER_ID": name,
            "PACER_METRICS_ADDR": self.metrics_addrs[name],
            **(env or {}),
        }
        self._settings[name] = settings
        self.schedulers[name] = (start_service("pacer-scheduler", addr, settings, self.tmp / f"{name}.log"), addr)
        return addr

    def restart_scheduler(self, name: str = "scheduler") -> None:
        """Start the scheduler `name` again (after it stopped or was killed), on its address and settings."""
        process, addr = self.schedulers[name]
        process.stop()
        log = self.tmp / f"{name}-restarted.log"
        self.schedulers[name] = (start_service("pacer-scheduler", addr, self._settings[name], log), addr)

    def add_executor(
        self,
        name: str = "executor",
        *,
        egress_allow: str = "loopback",
        capacity: int = 50,
        schedulers: str = "",
        env: Mapping[str, str] | None = None,
    ) -> ServiceProcess:
        self.metrics_addrs[name] = free_addr()
        self.health_addrs[name] = free_addr()
        settings = {
            "PACER_SCHEDULER_ADDRS": schedulers or ",".join(addr for _, addr in self.schedulers.values()),
            "PACER_EXECUTOR_ID": name,
            "PACER_EGRESS_ALLOW": egress_allow,
            "PACER_CAPACITY": str(capacity),
            "PACER_VAR_DIR": str(self.var),
            "PACER_METRICS_ADDR": self.metrics_addrs[name],
            "PACER_HEALTH_ADDR": self.health_addrs[name],
            **(env or {}),
        }
        self.executors[name] = start_service("pacer-executor", None, settings, self.tmp / f"{name}.log")
        return self.executors[name]

    def add_gateway(self) -> str:
        """Start the REST gateway in front of the control plane; its base URL, once it listens."""
        return self._add_frontend("gateway", "PACER_GATEWAY_ADDR", ())

    def add_mcp(self) -> str:
        """Start the MCP server over streamable HTTP in front of the control plane; its /mcp URL, once it listens."""
        return self._add_frontend("mcp", "PACER_MCP_ADDR", ("--transport", "http")) + "/mcp"

    def _add_frontend(self, name: str, addr_setting: str, args: tuple[str, ...]) -> str:
        addr = free_addr()
        self.metrics_addrs[name] = free_addr()
        settings = {
            addr_setting: addr,
            "PACER_CONTROL_ADDR": self.control_addr,
            "PACER_METRICS_ADDR": self.metrics_addrs[name],
        }
        self.frontends[name] = start_listener(f"pacer-{name}", addr, settings, self.tmp / f"{name}.log", args)
        return f"http://{addr}"

    def restart_control(self) -> None:
        self.stop_control()
        self.start_control_again()

    def stop_control(self) -> None:
        """Stop the control plane (SIGTERM); it must exit cleanly."""
        assert self.control.stop() == 0, self.control.logs()

    def start_control_again(self) -> None:
        """Start the control plane again on its address, database and settings; returns once it is SERVING."""
        self.control, _ = start_control(
            self.tmp, self.database_url, name="control-restarted", addr=self.control_addr, env=self._control_env
        )

    def pids_by_service(self) -> dict[str, int]:
        """Process id of every service of this stack, by name."""
        found = {"control": self.control.process.pid}
        found.update({name: p.process.pid for name, (p, _) in self.schedulers.items()})
        found.update({name: p.process.pid for name, p in self.executors.items()})
        return found

    def job(self, name: str = "e2e") -> str:
        return str(self.client.CreateJob(pb.CreateJobRequest(name=name)).job_id)

    def runs(self, endpoint_id: str) -> list[pb.RunSummary]:
        """Every run of the endpoint, oldest first."""
        response = self.client.ListRuns(pb.ListRunsRequest(endpoint_id=endpoint_id, limit=500))
        return list(reversed(response.runs))

    def log_texts(self) -> dict[str, str]:
        """Everything every process of this stack wrote (restarted ones too), by log file name."""
        return {path.name: path.read_text(errors="replace") for path in sorted(self.tmp.glob("*.log"))}

    def logs(self) -> str:
        parts = [f"--- control\n{self.control.logs()}"]
        parts += [f"--- {n}\n{p.logs()}" for n, (p, _) in self.schedulers.items()]
        parts += [f"--- {n}\n{p.logs()}" for n, p in self.executors.items()]
        parts += [f"--- {n}\n{p.logs()}" for n, p in self.frontends.items()]
        return "\n".join(parts)

    def close(self) -> None:
        for process in self.frontends.values():
            process.stop()
        for process in self.executors.values():
            process.stop()
        for process, _ in self.schedulers.values():
            process.stop()
        self.control.stop()
        self._channel.close()

"""Pacer's three services as local processes for the demo: SQLite in a folder of its own, free ports.

Started with the launcher `scripts/run_local.py` and the end-to-end tests use too (`pacer_common.processes`): each
service is its console script from this virtualenv, in a session of its own (so a Ctrl-C reaches only the demo,
which then stops them in order), logging to a file, and considered up once grpc.health.v1 says SERVING.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pacer_common.processes import ServiceProcess, StartError, free_addr, stop_in_order

__all__ = ["LocalPacer", "StartError"]

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
STOP_ORDER = ("scheduler", "executor", "control")


def launch(name: str, command: str, env: Mapping[str, str], folder: Path) -> ServiceProcess:
    """Start `command` from this virtualenv with `env` added, its output in `folder/<name>.log`."""
    return ServiceProcess(command, env, folder / f"{name}.log", name=name, own_session=True)


@dataclass
class LocalPacer:
    """Control plane, one scheduler and one executor on SQLite in `folder`.

    `control_env` and `scheduler_env` are added to those services' settings (the demo shortens the interval floor,
    the claim horizon and the claim interval to suit its compressed time).
    """

    folder: Path
    control_env: Mapping[str, str] = field(default_factory=dict)
    scheduler_env: Mapping[str, str] = field(default_factory=dict)
    control_addr: str = field(default_factory=free_addr)
    scheduler_addr: str = field(default_factory=free_addr)
    executor_health_addr: str = field(default_factory=free_addr)
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    @property
    def var_dir(self) -> Path:
        """Where the control plane writes the dev key and the service token."""
        return self.folder / "var"

    def api_key(self) -> str:
        """The dev tenant's key, written by the control plane on its first start."""
        return (self.var_dir / "dev-api-key").read_text().strip()

    def start(self) -> None:
        """Start the three services in order, each once the one before is SERVING; raises StartError."""
        self._start("control", "pacer-control", self._control_settings(), self.control_addr)
        self._start("scheduler", "pacer-scheduler", self._scheduler_settings(), self.scheduler_addr)
        # Ready once its stream to the scheduler is open.
        self._start("executor", "pacer-executor", self._executor_settings(), self.executor_health_addr)

    def _start(self, name: str, command: str, env: Mapping[str, str], health_addr: str) -> None:
        service = launch(name, command, env, self.folder)
        self.services[name] = service
        service.wait_serving(health_addr, START_TIMEOUT_S)

    def stop(self) -> dict[str, int]:
        """SIGTERM each service and wait for it, scheduler first: it stops claiming and dispatches what it already
        claimed while the executor is still there, so no run is left to expire. Returns exit codes by name."""
        codes = stop_in_order(self.services, STOP_ORDER, STOP_TIMEOUT_S)
        self.services.clear()
        return codes

    def _common(self) -> dict[str, str]:
        return {"PACER_VAR_DIR": str(self.var_dir), "PACER_METRICS_ADDR": "", "PACER_LOG_LEVEL": "INFO"}

    def _control_settings(self) -> dict[str, str]:
        return {
            **self._common(),
            "PACER_LISTEN_ADDR": self.control_addr,
            "PACER_DATABASE_URL": f"sqlite:///{self.folder / 'pacer.db'}",
            **self.control_env,
        }

    def _scheduler_settings(self) -> dict[str, str]:
        return {
            **self._common(),
            "PACER_SCHEDULER_ADDR": self.scheduler_addr,
            "PACER_CONTROL_ADDR": self.control_addr,
            "PACER_SCHEDULER_ID": "demo-scheduler",
            **self.scheduler_env,
        }

    def _executor_settings(self) -> dict[str, str]:
        return {
            **self._common(),
            "PACER_SCHEDULER_ADDRS": self.scheduler_addr,
            "PACER_EXECUTOR_ID": "demo-executor",
            "PACER_EGRESS_ALLOW": "loopback",  # the demo shop listens on 127.0.0.1
            "PACER_HEALTH_ADDR": self.executor_health_addr,
            "PACER_CAPACITY": "20",
        }

"""The SQL of endpoint policies at run time: what a rule reads about a recorded run, and what it leaves behind.

`subject` reads the run, its endpoint (with its rules) and each rule's state; `sibling` finds an endpoint of the same
job by name; `record` writes, in one transaction, the outcomes of the rules whose condition held (`policy_firings`)
and every rule's new streak and last firing (`policy_states`). The actions a rule takes are not here: they go through
`pacer_control.actions`, as an agent's would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Table, bindparam, delete, insert, select

from pacer_common.policies import Outcome, Rule, RuleState, from_json
from pacer_control.models import PolicyFiring, PolicyState
from pacer_control.store import ENDPOINTS, JOBS, RUNS, Store

FIRINGS: Table = PolicyFiring.__table__  # type: ignore[assignment]
STATES: Table = PolicyState.__table__  # type: ignore[assignment]

_RUN_COLUMNS: Final = (
    "id",
    "tenant_id",
    "endpoint_id",
    "job_id",
    "status",
    "source",
    "attempt",
    "http_status",
    "duration_ms",
    "error_message",
    "response_body",
    "response_truncated",
    "attempts",
)
_ENDPOINT_COLUMNS: Final = (
    "name",
    "failure_count",
    "interval_ms",
    "hint_interval_ms",
    "hint_expires_at",
    "paused",
    "policies",
    "deleted_at",
)
_SUBJECT: Final = (
    select(
        *(RUNS.c[name] for name in _RUN_COLUMNS),
        *(ENDPOINTS.c[name].label(f"endpoint_{name}") for name in _ENDPOINT_COLUMNS),
        JOBS.c.status.label("job_status"),
    )
    .join(ENDPOINTS, ENDPOINTS.c.id == RUNS.c.endpoint_id)
    .join(JOBS, JOBS.c.id == RUNS.c.job_id)
    .where(RUNS.c.id == bindparam("run_id"))
)
_STATES: Final = select(STATES.c.rule, STATES.c.streak, STATES.c.last_fired_at).where(
    STATES.c.endpoint_id == bindparam("endpoint_id")
)
_SIBLING: Final = (
    select(ENDPOINTS.c.id)
    .where(
        ENDPOINTS.c.tenant_id == bindparam("tenant_id"),
        ENDPOINTS.c.job_id == bindparam("job_id"),
        ENDPOINTS.c.name == bindparam("name"),
        ENDPOINTS.c.deleted_at.is_(None),
    )
    .order_by(ENDPOINTS.c.created_at)
    .limit(1)
)


@dataclass(frozen=True)
class Subject:
    """A recorded run, as its endpoint's rules see it."""

    run: Mapping[str, Any]
    endpoint: Mapping[str, Any]
    rules: tuple[Rule, ...]
    states: Mapping[str, RuleState]
    live: bool

    @property
    def tenant_id(self) -> str:
        return str(self.run["tenant_id"])

    @property
    def endpoint_id(self) -> str:
        return str(self.run["endpoint_id"])


@dataclass(frozen=True)
class Firing:
    """One rule's outcome on one run, as `policy_firings` keeps it."""

    rule: str
    outcome: Outcome
    effects: tuple[str, ...] = ()
    error_message: str = ""


class PolicyBook(Store):
    """The rules' reads and writes around a recorded run."""

    def subject(self, run_id: str) -> Subject | None:
        """The run, its endpoint and its rules' states; None when the run is gone (pruned) or unknown."""
        with self._reading() as connection:
            row = connection.execute(_SUBJECT, {"run_id": run_id}).mappings().first()
            if row is None:
                return None
            states = {
                r.rule: RuleState(r.streak, r.last_fired_at)
                for r in connection.execute(_STATES, {"endpoint_id": row["endpoint_id"]})
            }
        endpoint = {name: row[f"endpoint_{name}"] for name in _ENDPOINT_COLUMNS}
        live = endpoint["deleted_at"] is None and row["job_status"] == "active"
        run = {name: row[name] for name in _RUN_COLUMNS}
        return Subject(run, endpoint, from_json(endpoint["policies"]), states, live)

    def sibling(self, tenant_id: str, job_id: str, name: str) -> str | None:
        """The id of the live endpoint named `name` in the tenant's job, None when there is none."""
        with self._reading() as connection:
            found = connection.scalar(_SIBLING, {"tenant_id": tenant_id, "job_id": job_id, "name": name})
        return str(found) if found is not None else None

    def record(
        self,
        subject: Subject,
        firings: Sequence[Firing],
        states: Mapping[str, RuleState],
        at: datetime,
    ) -> None:
        """Keep the outcomes of the rules that held and the new state of every rule, in one transaction."""
        run, endpoint_id = subject.run, subject.endpoint_id
        with self._engine.begin() as connection:
            if firings:
                rows = [
                    {
                        "tenant_id": run["tenant_id"],
                        "endpoint_id": endpoint_id,
                        "run_id": run["id"],
                        "rule": f.rule,
                        "outcome": f.outcome.value,
                        "effects": list(f.effects),
                        "error_message": f.error_message,
                        "at": at,
                    }
                    for f in firings
                ]
                connection.execute(insert(FIRINGS), rows)
            connection.execute(delete(STATES).where(STATES.c.endpoint_id == endpoint_id))
            if states:
                rows = [
                    {"endpoint_id": endpoint_id, "rule": rule, "streak": s.streak, "last_fired_at": s.last_fired_at}
                    for rule, s in states.items()
                ]
                connection.execute(insert(STATES), rows)

"""What the MCP server measures: tool calls by tool and outcome, and how long they take.

Served at `/metrics` on its own port (PACER_METRICS_ADDR; by default 127.0.0.1:9468 over HTTP and off over stdio,
where each agent starts its own server and a fixed port would be taken by the second). The labels are bounded: the
tool is one of the advertised names (an unknown name is refused before it is counted), the outcome `OK` or a gRPC
status name.
"""

from __future__ import annotations

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

from pacer_common.telemetry import HANDLING_BUCKETS_S

OUTCOMES = frozenset({"OK"} | {code.name for code in grpc.StatusCode})
UPSTREAM_FAILURES = frozenset({"UNAVAILABLE", "INTERNAL", "UNKNOWN", "DEADLINE_EXCEEDED", "DATA_LOSS"})


class McpMetrics:
    """The MCP server's metrics on `registry` (a private one when None, as in tests)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.tool_calls = Counter(
            "pacer_mcp_tool_calls",
            "Tool calls answered, by tool and outcome (OK, or the gRPC status name of a refusal or failure).",
            ["tool", "outcome"],
            registry=self.registry,
        )
        self.tool_duration = Histogram(
            "pacer_mcp_tool_call_duration_seconds",
            "Time to answer a tool call, control plane call included, by tool.",
            ["tool"],
            buckets=HANDLING_BUCKETS_S,
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "pacer_mcp_upstream_errors",
            "Tool calls the control plane (or the server itself) failed, by gRPC status name.",
            ["code"],
            registry=self.registry,
        )

    def observe(self, tool: str, outcome: str, seconds: float) -> None:
        known = outcome if outcome in OUTCOMES else "UNKNOWN"
        self.tool_calls.labels(tool, known).inc()
        self.tool_duration.labels(tool).observe(seconds)
        if known in UPSTREAM_FAILURES:
            self.upstream_errors.labels(known).inc()

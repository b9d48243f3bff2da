"""The flash-sale agent's rules as policies on the traffic monitor: Pacer steers the sale by itself, no agent needed.

`examples/agents/flash_sale_agent.py` reads each health snapshot
(`{"traffic_per_min": 6000, "page_load_ms": 4500, "orders_per_min": 120, "db_query_ms": 1200}`) and steers through
the public API. These rules say the same in CEL, evaluated by Pacer each time the traffic monitor's run is recorded
(the monitor runs at least as often as the other health checks, and at the same moments, so it sees every change
first):

- traffic at 5000/min or more: the monitor every 20 s for an hour; below 2000/min while tightened: back to its
  baseline;
- pages at 3000 ms or more: the slow-page analyzer runs and the cache is warmed (asking again during the warm-up's
  cooldown queues its next run); below: the analyzer pauses and a queued warm-up is dropped;
- database queries at 800 ms or more: the query tracer runs; below: it pauses;
- orders falling under load: scale the workers; orders collapsed: tell support; pages critical: tell ops at once and
  page on-call in 5 minutes, unless pages recover first (which drops the queued page). Each of those fires once an
  hour at most (the rule's cooldown); the endpoint's min clamp protects the target besides.

The rules are level-triggered: each acts on every run its condition holds on. Resuming an active endpoint, pausing a
paused one or clearing the hints of one that has none changes nothing, so that is harmless, but each such action is
still audited; `calm` reads `endpoint.hinted` so that it acts only while the monitor is tightened, and the one-shot
rules have a cooldown. The same rules are in `examples/use-cases/flash-sale.yaml` (a unit test keeps the two
equal). `policies(scale)` divides every duration by `scale` for the compressed demo; the hint's TTL never goes under
the API's minute.
"""

from __future__ import annotations

from pacer.control.v1 import control_service_pb2 as pb

MONITOR = "traffic-monitor"
SURGE = "has(body.traffic_per_min) && body.traffic_per_min >= 5000"
CALM = "endpoint.hinted && has(body.traffic_per_min) && body.traffic_per_min < 2000"
PAGES_SLOW = "has(body.page_load_ms) && body.page_load_ms >= 3000"
PAGES_OK = "has(body.page_load_ms) && body.page_load_ms < 3000"
PAGES_CRITICAL = "has(body.page_load_ms) && body.page_load_ms >= 4000"
PAGES_NOT_CRITICAL = "has(body.page_load_ms) && body.page_load_ms < 4000"
DB_SLOW = "has(body.db_query_ms) && body.db_query_ms >= 800"
DB_OK = "has(body.db_query_ms) && body.db_query_ms < 800"
ORDERS_FALLING = f"{SURGE} && has(body.orders_per_min) && body.orders_per_min < 170"
ORDERS_COLLAPSED = f"{SURGE} && has(body.orders_per_min) && body.orders_per_min <= 120"

SURGE_INTERVAL_MS = 20_000
HOUR_MS = 3_600_000
ON_CALL_DELAY_MS = 5 * 60_000
SURGE_COOLDOWN_MS = 10 * 60_000
MIN_HINT_TTL_MS = 60_000


def _hint(interval_ms: int, ttl_ms: int) -> pb.PolicyAction:
    return pb.PolicyAction(interval_hint=pb.PolicyIntervalHint(interval_ms=interval_ms, ttl_ms=ttl_ms))


def _one_shot(endpoint: str, delay_ms: int = 0) -> pb.PolicyAction:
    return pb.PolicyAction(endpoint=endpoint, one_shot=pb.PolicyOneShot(delay_ms=delay_ms))


def _resume(endpoint: str) -> pb.PolicyAction:
    return pb.PolicyAction(endpoint=endpoint, resume=pb.PolicyResume())


def _pause(endpoint: str) -> pb.PolicyAction:
    return pb.PolicyAction(endpoint=endpoint, pause=pb.PolicyPause())


def _clear(endpoint: str = "") -> pb.PolicyAction:
    return pb.PolicyAction(endpoint=endpoint, clear_hints=pb.PolicyClearHints())


def policies(scale: float = 1.0) -> list[pb.Policy]:
    """The traffic monitor's rules, every duration divided by `scale` (1: real time)."""

    def ms(duration_ms: int) -> int:
        return max(1, round(duration_ms / scale))

    def rule(name: str, when: str, *then: pb.PolicyAction, cooldown_ms: int = 0) -> pb.Policy:
        return pb.Policy(name=name, when=when, then=list(then), cooldown_ms=ms(cooldown_ms) if cooldown_ms else 0)

    return [
        rule(
            "surge",
            SURGE,
            _hint(ms(SURGE_INTERVAL_MS), max(MIN_HINT_TTL_MS, ms(HOUR_MS))),
            cooldown_ms=SURGE_COOLDOWN_MS,
        ),
        rule("calm", CALM, _clear()),
        rule("pages-slow", PAGES_SLOW, _resume("slow-page-analyzer"), _one_shot("cache-warm-up")),
        rule("pages-ok", PAGES_OK, _pause("slow-page-analyzer"), _clear("cache-warm-up")),
        rule("db-slow", DB_SLOW, _resume("query-tracer")),
        rule("db-ok", DB_OK, _pause("query-tracer")),
        rule("orders-falling", ORDERS_FALLING, _one_shot("scale-workers"), cooldown_ms=HOUR_MS),
        rule("orders-collapsed", ORDERS_COLLAPSED, _one_shot("support-chat"), cooldown_ms=HOUR_MS),
        rule(
            "pages-critical",
            PAGES_CRITICAL,
            _one_shot("ops-chat"),
            _one_shot("on-call-page", ms(ON_CALL_DELAY_MS)),
            cooldown_ms=HOUR_MS,
        ),
        rule("pages-not-critical", PAGES_NOT_CRITICAL, _clear("on-call-page")),
    ]

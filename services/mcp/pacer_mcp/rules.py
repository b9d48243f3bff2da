"""The `pacer://scheduling-rules` resource: how Pacer picks an endpoint's next run, in words an agent can act on.

The text restates DESIGN.md section 4 (the governor in `pacer_common.governor`); keep the two in step.
"""

from __future__ import annotations

from string import Template

from pacer_common import limits

RULES_URI = "pacer://scheduling-rules"
RULES_NAME = "scheduling-rules"
RULES_TITLE = "How Pacer chooses the next run"
RULES_MIME_TYPE = "text/markdown"
RULES_DESCRIPTION = (
    "Pacer's scheduling rules (baseline, failure backoff, interval hints, one-shots, clamps, pause) and recipes "
    "for steering endpoints during incidents. Read this before using the steering tools."
)

# The limits come from `pacer_common.limits`, as in the tool schemas; `$name` marks where.
_RULES_TEMPLATE = """\
# How Pacer chooses the next run

Pacer calls each endpoint (an HTTP request) on a schedule. After every run, and whenever you change an endpoint's
configuration, hints, pause or failure count, Pacer re-plans the endpoint's next run at once. A change that makes the
next run earlier takes effect within about a second. All times are UTC (RFC 3339, e.g. `2026-01-05T10:00:00Z`); all
durations are milliseconds unless the name says minutes (`ttlMinutes`) or hours (`windowHours`).

Two terms:

- **anchor**: the time the endpoint's last run was scheduled for. If it has not run since it was created, resumed or
  reconfigured, the anchor is that moment instead.
- **last start**: when the last run actually started.

## The rules, in order

1. **Baseline.** Every endpoint has exactly one baseline:
   - `cron` (`{"cron": {"expression": "*/5 * * * *", "timezone": "Europe/Berlin"}}`): the next slot strictly after
     the anchor, so a slot is never run twice. 5 fields (minute first) or 6 fields (seconds first); the timezone is
     an IANA name, empty means UTC; daylight-saving changes are handled.
   - `intervalMs` (`{"intervalMs": 60000}`): anchor + intervalMs x backoff.
2. **Failure backoff.** backoff = 2^min(failureCount, 5): 1x, 2x, 4x, 8x, 16x, then at most 32x. A failure is any
   finished run that did not succeed (non-2xx, network error, timeout, lost, blocked); a success resets the count to
   0. Backoff stretches only an interval baseline, never a cron baseline or a hint. `resetFailureCount` removes it.
3. **Interval hint** (`applyIntervalHint`). While fresh (until `hintExpiresAt` = now + `ttlMinutes`, default $ttl,
   at most $ttl_max), anchor + hint `intervalMs` *replaces* the baseline: it can tighten or relax the cadence. A newer
   hint replaces an older one. When it expires the endpoint goes back to its baseline by itself.
4. **One-shot** (`scheduleOneShotRun`). One extra run at `runAt`. It competes with the time from rules 1-3 and the
   earlier one wins. It is consumed by the run it produces. If it cannot fire at `runAt` it stays valid for
   `ttlMinutes` (default $ttl) after `runAt`, then is dropped. A `runAt` up to 5 minutes in the past means "now".
   Only one one-shot is pending per endpoint; a new one replaces the old.
5. **Overdue.** A time already in the past becomes "now": missed slots are coalesced into a single run, never
   replayed one by one, and counted (`missedSlots` in `summarizeEndpointHealth`; paused time and backoff are not
   missed). The coalesced run keeps the endpoint's phase: an interval endpoint's next run is the next point of its
   own grid (anchor + k x interval), so endpoints delayed together by an outage spread out again within one
   interval. Runs that keep taking longer than the interval miss slots too: relax the interval or speed them up.
6. **Clamps** (`clamp: {"minIntervalMs", "maxIntervalMs"}`, 0 = no bound).
   - min: never start sooner than last start + `minIntervalMs`. This is a **cooldown** and it applies to everything,
     hints and one-shots included.
   - max: never later than anchor + `maxIntervalMs` (or now, if that is already past).
   - If both bounds conflict, **the min clamp wins**.
7. **Pause** (`pauseOrResumeEndpoint`). While paused, the baseline and interval hints do not fire. A timed pause
   (`pauseUntil`) runs next at the pause end; an indefinite pause (no `pauseUntil`) runs never. **A one-shot still
   fires while paused** (subject to the min clamp) **and the pause stays in force afterwards**: "fire once, then
   cool down". Resuming makes the resume time the new anchor.

Every planned and recorded run carries the rule that chose its time (`source`, `nextRunSource`):

| source | meaning |
|---|---|
| `RUN_SOURCE_BASELINE_CRON` | the next cron slot |
| `RUN_SOURCE_BASELINE_INTERVAL` | the interval baseline, with backoff |
| `RUN_SOURCE_AI_INTERVAL` | an interval hint |
| `RUN_SOURCE_AI_ONESHOT` | a one-shot |
| `RUN_SOURCE_CLAMPED_MIN` | held back by the min clamp (cooldown) |
| `RUN_SOURCE_CLAMPED_MAX` | pulled forward by the max clamp |
| `RUN_SOURCE_PAUSED` | the end of a timed pause |

Other facts worth knowing:

- An endpoint never has two runs in flight. Delivery is at least once: targets receive `X-Pacer-Run-Id`,
  `X-Pacer-Endpoint-Id` and `X-Pacer-Scheduled-For` headers to de-duplicate.
- The shortest interval anywhere (baseline, clamps, hints) is 1000 ms unless the operator or your tenant's quota set
  a higher floor; the longest is $longest_days days.
- Archived jobs and deleted endpoints never fire; their run history stays readable.
- Another tenant's ids look exactly like unknown ids (`NOT_FOUND`).
- Every change takes an optional `reason` (at most $reason_max characters) that goes to the audit trail: say why.

## Recipes

**Tighten during a surge.** Traffic spiked 5x on a health check that normally runs every 2 minutes:
`applyIntervalHint {endpointId, intervalMs: 20000, ttlMinutes: 20, reason: "traffic spiked 5x"}`. It runs every 20 s
for 20 minutes, then returns to its baseline by itself. Re-apply the hint to extend it; `clearAdaptiveHints` ends it
early.

**Activate a paused investigation endpoint.** Keep investigation endpoints (slow-query logs, heap profiles) paused
indefinitely until needed. When latency degrades, either
- run it once: `scheduleOneShotRun {endpointId, runAt: <now>, reason: "p95 latency doubled"}`; it stays paused
  afterwards, or
- run it continuously for a while: `pauseOrResumeEndpoint {endpointId, resume: true, reason: ...}`, optionally with
  `applyIntervalHint` for the cadence, and pause it again (`pauseOrResumeEndpoint {endpointId}`) once done.

**Remediation one-shot with a cooldown.** For an expensive action (restart pods, flush a cache, scale up) create the
endpoint with a long baseline (e.g. `{"intervalMs": 86400000}`), a cooldown as the min clamp
(`clamp: {"minIntervalMs": 600000}` for 10 minutes), and pause it indefinitely right away
(`pauseOrResumeEndpoint {endpointId}`). Each time you decide to remediate, call `scheduleOneShotRun` with
`runAt` = now: it fires once and the endpoint stays paused. A second one-shot within 10 minutes of the last start is
held back until the cooldown ends (`scheduledFor` tells you when), so repeated decisions cannot hammer the target.
Alert endpoints (Slack, pager) work the same way with their own cooldowns (10 minutes, 1 hour).

**Escalate only after remediation fails.** After a remediation one-shot, check its outcome
(`listRuns {endpointId, limit: 1}`, then `getRunDetails`) and the health checks' `summarizeEndpointHealth`; schedule
the alert one-shot only if health did not recover.

**Back off after recovery.** When health is good again: `clearAdaptiveHints` on the endpoints you tightened (back to
baseline), pause the investigation endpoints again, and `resetFailureCount` on endpoints whose failures you fixed so
backoff does not keep them slow. To watch less often for a while, apply a *longer* interval hint (e.g.
`intervalMs: 600000, ttlMinutes: 120`): a hint may relax as well as tighten.

**Install rules instead of polling.** Steering from outside means reading every run. An endpoint's `policies` do
it inside Pacer: each time a run of the endpoint is recorded, every rule whose CEL condition `when` holds on that
run (`run.status`, `run.http_status`, `run.duration_ms`, `body` = the response parsed as JSON, `endpoint`, `streak`)
takes its actions in order (`intervalHint`, `oneShot`, `pause`, `resume`, `clearHints`, `resetFailures`, on this
endpoint or another of the job named by `endpoint`), with the same clamps and quotas as the tools, then not again for
`cooldownMs`. The audit trail names the rule (`policy:<name>`); `getRunDetails` shows `policyFirings` and
`summarizeEndpointHealth` `policyCounts`. Example, on a traffic monitor: `{"name": "surge", "when": "has(body.ratio)
&& body.ratio > 5.0", "then": [{"intervalHint": {"intervalMs": 30000, "ttlMs": 3600000}}, {"endpoint":
"inventory-check", "resume": {}}], "cooldownMs": 600000}`.

**Read what happened.** `listRuns` (filter by `jobId`, `endpointId`, `status`: success | failure | running) lists
runs newest first with `total`; `getRunDetails` shows the HTTP status, error and the first 64 KiB of the response
body; `summarizeEndpointHealth {endpointId, windowHours}` gives success/failure counts, average and p95 duration,
the last run, the current failure streak and the slots missed in the endpoint's life (`missedSlots`, `lastMissedAt`).
"""
RULES_MARKDOWN = Template(_RULES_TEMPLATE).substitute(
    ttl=limits.TTL_MINUTES.default,
    ttl_max=limits.TTL_MINUTES.maximum,
    longest_days=limits.MAX_INTERVAL_MS // 86_400_000,
    reason_max=limits.REASON.max_length,
)

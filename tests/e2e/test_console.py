"""The web console in a real browser (Debian's chromium driven by Playwright) against a real stack.

One stack serves the module: control, scheduler, executor, the REST gateway that serves the console, and a local
HTTP target. The tests run in order, as a person would: sign in, create a job and an endpoint, watch runs arrive,
steer, read a run, and check that another tenant sees nothing. They also write the screenshots shown in
docs/console.md and the README. SQLite only: the console adds no SQL, and the REST and gRPC paths it calls are
covered on both backends elsewhere.
"""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from pacer.control.v1 import control_service_pb2 as pb
from tests.support.environment import require
from tests.support.harness import ts
from tests.support.polling import wait_for
from tests.support.processes import BIN, ServiceProcess, free_addr, start_service
from tests.support.stack import Stack
from tests.support.target import HttpTarget

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
SCRIPT_BODY = '<script>alert("owned")</script>{"note": "not JSON"}'
WAIT_MS = 15_000
expect.set_options(timeout=WAIT_MS)


@dataclass
class Console:
    stack: Stack
    target: HttpTarget
    url: str
    browser: Browser
    key: str
    state: dict[str, str]
    errors: list[str] = field(default_factory=list)


def start_gateway(stack: Stack) -> tuple[ServiceProcess, str]:
    addr = free_addr()
    env = {"PACER_GATEWAY_ADDR": addr, "PACER_CONTROL_ADDR": stack.control_addr, "PACER_EVENT_LOOP": "asyncio"}
    gateway = start_service("pacer-gateway", None, env, stack.tmp / "gateway.log")
    wait_for(lambda: _healthy(f"http://{addr}/healthz"), 15, "the gateway to answer")
    return gateway, f"http://{addr}"


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def tenant_key(stack: Stack, name: str) -> str:
    def admin(*args: str) -> str:
        done = subprocess.run(
            [str(BIN / "pacer-admin"), "--database-url", stack.database_url, *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    admin("create-tenant", name)
    return admin("create-key", name)


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    if not CHROMIUM.exists():
        require(f"no chromium at {CHROMIUM} (scripts/ensure-chromium.sh installs it)", "the console's browser tests")
    tmp = tmp_path_factory.mktemp("console")
    target = HttpTarget().start()
    target.respond("/script", body=SCRIPT_BODY, content_type="text/html")
    target.respond("/checkout", delay_ms=40, body='{"in_stock": 12}', content_type="application/json")
    stack = Stack(tmp, f"sqlite:///{tmp / 'pacer.db'}")
    gateway: ServiceProcess | None = None
    try:
        stack.add_scheduler()
        stack.add_executor()
        gateway, url = start_gateway(stack)
        key = (stack.var / "dev-api-key").read_text().strip()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            yield Console(stack, target, url, browser, key, {})
            browser.close()
    finally:
        if gateway is not None:
            gateway.stop()
        stack.close()
        target.stop()


@pytest.fixture(scope="module")
def page(console: Console) -> Iterator[Page]:
    context = console.browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(WAIT_MS)
    # Script errors and policy violations (a refused inline style, say) show up as console errors; failed API calls
    # (the wrong key's 401) are expected and reported by the page itself.
    opened.on(
        "console",
        lambda message: (
            message.type == "error"
            and "Failed to load resource" not in message.text
            and console.errors.append(message.text)
        ),
    )
    opened.on("pageerror", lambda error: console.errors.append(str(error)))
    yield opened
    context.close()


def sign_in(page: Page, url: str, key: str) -> None:
    page.goto(url + "/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()


def submit(page: Page, form: str, **values: str) -> None:
    """Fill the named form's fields (by their name) and submit it."""
    scope = page.locator(f"form[data-form={form}]")
    for name, value in values.items():
        control = scope.locator(f"[name={name}]")
        if control.evaluate("node => node.tagName") == "SELECT":
            control.select_option(value)
        else:
            control.fill(value)
    scope.locator("button[type=submit]").first.click()


def test_the_page_is_served_with_a_strict_policy_and_its_own_assets(console: Console) -> None:
    with urllib.request.urlopen(console.url + "/") as response:
        headers = response.headers
        html = response.read().decode()
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    assert "http" not in html.replace('content="width', "")  # no asset from anywhere else


def test_a_wrong_key_gets_a_clear_message_and_the_right_one_signs_in(console: Console, page: Page) -> None:
    sign_in(page, console.url, "pacer_not_a_real_key")
    expect(page.locator("#signin-error")).to_contain_text("not accepted")
    # By keyboard alone: the key field has the focus, Enter submits.
    page.goto(console.url + "/")
    expect(page.get_by_label("API key")).to_be_focused()
    page.keyboard.type(console.key)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    assert page.evaluate("document.cookie") == ""
    assert console.key not in page.url


def test_create_a_job_and_an_endpoint_and_see_runs_appear_live(console: Console, page: Page) -> None:
    submit(page, "create-job", name="Storefront checks", description="Checkout and inventory probes")
    expect(page.get_by_role("heading", name="Storefront checks")).to_be_visible()
    console.state["job_url"] = page.url
    submit(page, "add-endpoint", name="script-echo", url=console.target.url("/script"), intervalMs="1", reason="probe")
    expect(page.get_by_role("heading", name="script-echo")).to_be_visible()
    page.goto(console.state["job_url"])
    submit(page, "add-endpoint", name="checkout", url=console.target.url("/checkout"), intervalMs="1", reason="watch")
    expect(page.get_by_role("heading", name="checkout")).to_be_visible()
    console.state["endpoint_url"] = page.url
    # Runs arrive without a reload: the page polls ListRuns.
    wait_for(lambda: page.locator("[data-section=chart] circle.p-success").count() >= 3, 15, "runs on the chart")
    assert page.locator("[data-section=runs] tr[data-run]").count() >= 3


def open_action(page: Page, title: str) -> None:
    """Unfold a steering form (each sits in a <details> named by its summary)."""
    summary = page.locator("summary").filter(has_text=title)
    if summary.locator("xpath=..").get_attribute("open") is None:
        summary.click()


def planned_interval_ms(page: Page) -> int:
    planned = page.locator("[data-series=planned]")
    return int(planned.get_attribute("data-interval-ms") or 0) if planned.count() else 0


def test_a_hint_moves_the_next_run_and_the_interval_line(console: Console, page: Page) -> None:
    page.goto(console.state["endpoint_url"])
    before = planned_interval_ms(page)
    assert before <= 1500, before
    open_action(page, "Apply an interval hint")
    submit(page, "hint", intervalMs="4", ttlMinutes="30", reason="flash sale starts")
    wait_for(lambda: planned_interval_ms(page) >= 3500, 10, "the planned interval to follow the hint")
    wait_for(lambda: page.locator("rect[data-kind=hint]").count() == 1, 10, "the hint band")
    assert "flash sale starts" in (page.locator("rect[data-kind=hint] title").text_content() or "")
    expect(page.locator("[data-fact=cadence]")).to_contain_text("hint every 4 s until")
    # Two runs at the hinted cadence, so the step line shows it (and the screenshot shows both cadences).
    hinted = page.locator("[data-section=runs] tr[data-run]").filter(has_text="ai_interval")
    wait_for(lambda: hinted.count() >= 2, 15, "runs at the hinted interval")


def test_pause_shows_a_band_with_its_reason(console: Console, page: Page) -> None:
    open_action(page, "Pause")
    submit(page, "pause", reason="supplier maintenance")
    expect(page.locator("[data-fact=cadence]")).to_contain_text("paused")
    wait_for(lambda: page.locator("rect[data-kind=pause]").count() == 1, 10, "the pause band")
    assert "supplier maintenance" in (page.locator("rect[data-kind=pause] title").text_content() or "")
    expect(page.locator("[data-section=audit]")).to_contain_text("supplier maintenance")
    # The band grows while the pause lasts: the chart follows without a reload.
    band = page.locator("rect[data-kind=pause]")
    wait_for(lambda: float(band.get_attribute("width") or 0) > 60, 15, "the pause band to widen")
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.locator("main").screenshot(path=str(IMAGES / "console-endpoint.png"))


def test_a_required_reason_and_server_field_errors_show_beside_the_field(console: Console, page: Page) -> None:
    open_action(page, "Apply an interval hint")
    submit(page, "hint", intervalMs="5", ttlMinutes="30", reason="")
    assert page.locator("#f-hint-reason").evaluate("node => node.validity.valueMissing")
    submit(page, "hint", intervalMs="5", ttlMinutes="999999", reason="far too long")
    expect(page.locator("#f-hint-ttlMinutes-error")).not_to_be_empty()
    expect(page.locator("#f-hint-ttlMinutes")).to_have_attribute("aria-invalid", "true")


def test_the_job_page_shows_state_at_a_glance(console: Console, page: Page) -> None:
    page.goto(console.state["job_url"])
    rows = page.locator("tr[data-endpoint]")
    expect(rows).to_have_count(2)
    expect(page.get_by_role("table", name="Endpoints")).to_contain_text("paused")
    expect(page.locator("[data-section=audit]")).to_contain_text("flash sale starts")
    page.locator("main").screenshot(path=str(IMAGES / "console-job.png"))


def test_bulk_pause_and_resume_of_selected_endpoints(console: Console, page: Page) -> None:
    table = page.get_by_role("table", name="Endpoints")
    page.get_by_label("Select script-echo").check()
    submit(page, "bulk", reason="")
    submit(page, "bulk", reason="supplier outage")  # the first button: Pause selected
    expect(table.locator("tr[data-endpoint]").filter(has_text="script-echo")).to_contain_text("paused")
    page.get_by_label("Select script-echo").check()
    page.get_by_label("Select checkout").check()
    page.locator("form[data-form=bulk] [name=reason]").fill("outage over")
    page.get_by_role("button", name="Resume selected").click()
    expect(table).not_to_contain_text("paused")
    expect(page.locator("[data-section=audit]")).to_contain_text("outage over")


def test_a_captured_script_shows_as_text_and_never_runs(console: Console, page: Page) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.locator("tr[data-endpoint] a", has_text="script-echo").click()
    finished = page.locator("[data-section=runs] tr[data-run]").filter(has_text="success")
    finished.first.locator("a").click()
    response = page.locator("[data-section=response]")
    expect(response).to_have_text(SCRIPT_BODY)
    expect(page.locator("[data-fact=http-status]")).to_have_text("200")
    assert page.locator("main script").count() == 0
    assert dialogs == []


def test_a_retried_run_lists_each_attempt(console: Console, page: Page) -> None:
    console.target.respond("/flaky", status=503, fail_first=1)
    stack = console.stack
    job_id = stack.client.CreateJob(pb.CreateJobRequest(name="Retries")).job_id
    endpoint = pb.AddEndpointToJobRequest(
        job_id=job_id,
        name="flaky",
        url=console.target.url("/flaky"),
        baseline=pb.Baseline(interval_ms=3_600_000),
        retry=pb.RetryPolicy(max_attempts=2, backoff_ms=100),
    )
    endpoint_id = stack.client.AddEndpointToJob(endpoint).endpoint_id
    stack.client.ScheduleOneShotRun(pb.ScheduleOneShotRunRequest(endpoint_id=endpoint_id, run_at=ts(datetime.now(UTC))))
    wait_for(lambda: [r for r in stack.runs(endpoint_id) if r.status == pb.RUN_STATUS_SUCCESS], 15, "the retried run")
    (run,) = stack.runs(endpoint_id)
    page.goto(f"{console.url}/#/runs/{run.run_id}")
    rows = page.locator("[data-section=attempts] tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("503")
    expect(rows.nth(1)).to_contain_text("success")


def test_another_tenant_sees_none_of_these_jobs(console: Console) -> None:
    key = tenant_key(console.stack, "globex")
    context = console.browser.new_context(viewport={"width": 390, "height": 844})
    other = context.new_page()
    try:
        sign_in(other, console.url, key)
        expect(other.locator("main")).to_contain_text("No jobs.")
        other.goto(console.state["job_url"])
        expect(other.locator("main")).to_contain_text("Not found")
        expect(other.locator("main")).not_to_contain_text("Storefront checks")
    finally:
        context.close()


def test_the_pages_ran_without_script_errors_or_policy_violations(console: Console, page: Page) -> None:
    assert console.errors == []

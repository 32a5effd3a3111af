"""The dashboard in a real browser, against a real master, etcd, MongoDB and workers."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import psutil
from playwright.async_api import expect

from cronswarm.common import Job, Keyspace, Settings
from cronswarm.coord import EtcdStore, KeyValue
from cronswarm.logstore import MongoLogStore
from cronswarm.master import Role
from tests.browser.conftest import Dashboard
from tests.conftest import make_token
from tests.helpers import wait_for_prefix
from tests.swarm import swarm
from tests.workerkit import Gate


async def test_log_in_with_a_token(dashboard: Dashboard, admin_token: str) -> None:
    page = dashboard.page
    await dashboard.open("/")
    await expect(page).to_have_url(re.compile(r"/login\?next=/$"))
    await dashboard.shoot("login")
    await page.get_by_label("API token").fill("cs_nope_nope")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("alert")).to_have_text("That token is not valid.")
    await dashboard.log_in(admin_token)
    await expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    await expect(page.get_by_text("No jobs yet.")).to_be_visible()
    await page.get_by_role("button", name="Log out").click()
    await expect(page).to_have_url(re.compile(r"/login$"))


async def test_create_a_job_in_the_editor_see_it_run_and_open_its_output(
    dashboard: Dashboard, admin_token: str, settings: Settings, logs: MongoLogStore
) -> None:
    page = dashboard.page
    marker = f"hello-{uuid.uuid4().hex[:8]}"
    await dashboard.log_in(admin_token)
    await page.get_by_role("link", name="New job").click()
    await expect(page.get_by_role("heading", name="New job")).to_be_visible()
    await dashboard.ready()
    await page.get_by_label("Name", exact=True).fill("greeter")
    await page.get_by_label("Description").fill("Says hello every second")
    schedule, timezone = page.get_by_label("Cron expression"), page.get_by_label("Timezone")
    await schedule.fill("0 30 2 * * *")
    await timezone.fill("Europe/Paris")
    preview = page.locator("#preview li")
    await expect(preview).to_have_count(10)
    await expect(preview.first).to_contain_text(re.compile(r"02:30:00 \+0[12]:00$"))
    await schedule.fill("0 99 * * *")
    await expect(page.locator("#preview-error")).to_contain_text("schedule:")
    await expect(preview).to_have_count(0)
    await schedule.fill("* * * * * *")
    await expect(preview).to_have_count(10)
    await page.get_by_label("Command", exact=True).fill(f"echo {marker}")
    # The API's errors show next to their fields.
    await page.get_by_label("Timeout (s)").fill("-1")
    await page.get_by_label("Retry on exit codes").fill("1, 300")
    await page.get_by_role("button", name="Create job").click()
    await expect(page.get_by_role("alert")).to_contain_text("Not saved: 3 problems")
    timeout_error = page.locator('[data-field="timeout"] .field-error')
    await expect(timeout_error).to_contain_text("must be greater than 0")
    await expect(page.get_by_label("Timeout (s)")).to_be_focused()
    await expect(page.locator('[data-field="retry.on_exit_codes"] .field-error')).to_contain_text(
        "from 1 to 255")
    await expect(page.locator('[data-field="retry.attempts"] .field-error')).to_contain_text(
        "must be at least 2")
    await dashboard.shoot("editor-errors")
    await page.get_by_label("Timeout (s)").fill("30")
    await page.get_by_label("Retry on exit codes").fill("")
    async with swarm(settings, logs, 1):
        await page.get_by_role("button", name="Create job").click()
        await expect(page).to_have_url(re.compile(r"/\?name=greeter$"))
        row = page.locator('tr[data-job="greeter"]')
        await expect(row.locator(".words")).to_have_text("every second")
        await expect(row.get_by_text("Says hello every second")).to_be_visible()
        last = row.locator('[data-cell="last"] a.badge')
        await expect(last).to_have_text("succeeded")  # the page follows the runs
    await page.reload()  # the trend chart is drawn by the server
    await expect(row.locator("svg.trend rect.bar").first).to_be_attached()
    await expect(row.locator(".rate")).to_have_text("100%")
    await dashboard.shoot("jobs-after-run")
    stored = await dashboard.service.get("greeter")
    assert stored.job.timezone == "Europe/Paris" and stored.job.timeout == 30
    await last.click()
    await expect(page.get_by_role("heading", name="Run of greeter")).to_be_visible()
    await expect(page.locator("pre.log")).to_have_text(f"{marker}\n")
    await expect(page.locator("#run-status")).to_have_text("succeeded")
    await expect(page.locator(".facts")).to_contain_text("Exit code0")
    await dashboard.shoot("run")
    await page.get_by_role("link", name="Runs", exact=True).click()
    await expect(page.locator("table.runs tbody tr").first).to_contain_text("greeter")
    await page.get_by_label("Status").select_option("succeeded")
    await page.get_by_label("Job").fill("greeter")
    await page.get_by_role("button", name="Filter").click()
    await expect(page).to_have_url(re.compile(r"job=greeter"))
    await expect(page.locator("table.runs tbody tr").first).to_contain_text("succeeded")
    await dashboard.shoot("runs")
    await dashboard.open("/jobs/greeter/edit")
    await expect(page.locator("#preview li")).to_have_count(10)
    await dashboard.shoot("editor")


def processes_with(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] != psutil.STATUS_ZOMBIE and marker in " ".join(
                proc.info["cmdline"] or ()):
            found.append(proc)
    return found


async def test_kill_button_stops_a_long_job_and_its_children(
    dashboard: Dashboard, admin_token: str, settings: Settings, logs: MongoLogStore
) -> None:
    page = dashboard.page
    marker = f"1000.{uuid.uuid4().int % 10**8:08d}"  # a unique sleep length: findable
    await dashboard.service.create(Job.from_dict({
        "name": "long", "schedule": "0 0 1 1 *", "kill_grace": 2,
        "command": f"sleep {marker} & sleep {marker} & echo started; wait"}), actor="tests")
    await dashboard.log_in(admin_token)
    row = page.locator('tr[data-job="long"]')
    kill = row.get_by_role("button", name="Kill long")
    await expect(kill).to_be_hidden()
    async with swarm(settings, logs, 1):
        await row.get_by_role("button", name="Run long now").click()
        await expect(page.get_by_role("status")).to_contain_text("run long@")
        await expect(kill).to_be_visible()  # the page follows the running keys
        await expect(row.get_by_text("running now")).to_be_visible()
        await dashboard.shoot("jobs-running")
        await kill.click()
        await expect(page.get_by_role("status")).to_contain_text("long: stopping long@")
        last = row.locator('[data-cell="last"] a.badge')
        await expect(last).to_have_text("killed")
        await expect(kill).to_be_hidden()
    assert processes_with(marker) == []
    await last.click()
    await expect(page.locator("#run-status")).to_have_text("killed")
    await expect(page.locator("pre.log")).to_contain_text("started")  # the children ran
    await expect(page.locator(".facts")).to_contain_text("Killed by")


async def test_pause_and_resume(dashboard: Dashboard, admin_token: str) -> None:
    page = dashboard.page
    await dashboard.service.create(Job.from_dict({
        "name": "nightly", "schedule": "30 2 * * *", "command": "true"}), actor="tests")
    await dashboard.log_in(admin_token)
    switch = page.get_by_role("switch", name="Enabled: nightly")
    row = page.locator('tr[data-job="nightly"]')
    await expect(switch).to_have_attribute("aria-checked", "true")
    await expect(row.locator('[data-cell="next"] time')).to_be_visible()
    await switch.click()
    await expect(switch).to_have_attribute("aria-checked", "false")
    await expect(page.get_by_role("status")).to_have_text("nightly paused.")
    await expect(row.locator('[data-cell="next"]')).to_have_text("paused")
    assert (await dashboard.service.get("nightly")).job.enabled is False
    await page.reload()
    await dashboard.ready()
    await expect(switch).to_have_attribute("aria-checked", "false")
    await expect(row).to_have_class(re.compile(r"\bpaused\b"))
    await dashboard.shoot("jobs-paused")
    await switch.focus()
    await page.keyboard.press("Enter")  # keyboard alone does it too
    await expect(switch).to_have_attribute("aria-checked", "true")
    await expect(page.get_by_role("status")).to_have_text("nightly resumed.")
    assert (await dashboard.service.get("nightly")).job.enabled is True
    actions = [e.action for e in await dashboard.service.logs.query_audit(target="nightly")]
    assert actions[:2] == ["job.resume", "job.pause"]


async def test_viewer_sees_no_mutating_buttons_and_cannot_mutate(
    dashboard: Dashboard, store: EtcdStore, keys: Keyspace
) -> None:
    page = dashboard.page
    await dashboard.service.create(Job.from_dict({
        "name": "report", "schedule": "0 6 * * 1-5", "command": "true"}), actor="tests")
    await dashboard.log_in(await make_token(store, keys, Role.VIEWER))
    row = page.locator('tr[data-job="report"]')
    await expect(row.locator(".words")).to_have_text("at 06:00 on weekdays")
    await expect(row.locator(".state")).to_have_text("enabled")
    await expect(page.locator("main button")).to_have_count(1)  # the filter form's only
    await expect(page.get_by_role("main").get_by_role("button")).to_have_text(["Filter"])
    await expect(page.get_by_role("link", name=re.compile("New job|Edit"))).to_have_count(0)
    await expect(page.get_by_role("link", name="Audit")).to_have_count(0)
    await dashboard.shoot("jobs-viewer")
    # A crafted request with the session and its CSRF token is still refused.
    status = await page.evaluate("""async () => {
        const csrf = document.querySelector('meta[name="csrf-token"]').content;
        const r = await fetch('/api/jobs/report/pause',
                              {method: 'POST', headers: {'X-CSRF-Token': csrf}});
        return r.status;
    }""")
    assert status == 403
    assert (await dashboard.service.get("report")).job.enabled is True
    await dashboard.open("/jobs/report/edit")
    await expect(page.get_by_role("alert")).to_contain_text("needs role 'admin'")
    await dashboard.shoot("forbidden")


async def test_operator_may_run_and_pause_but_not_edit(
    dashboard: Dashboard, store: EtcdStore, keys: Keyspace
) -> None:
    page = dashboard.page
    await dashboard.service.create(Job.from_dict({
        "name": "report", "schedule": "0 6 * * 1-5", "command": "true"}), actor="tests")
    await dashboard.log_in(await make_token(store, keys, Role.OPERATOR))
    row = page.locator('tr[data-job="report"]')
    await expect(row.get_by_role("switch", name="Enabled: report")).to_be_visible()
    await expect(row.get_by_role("button", name="Run report now")).to_be_visible()
    await expect(page.get_by_role("link", name=re.compile("New job|Edit"))).to_have_count(0)


async def test_workers_page_greys_lost_workers_and_audit_shows_changes(
    dashboard: Dashboard, admin_token: str, settings: Settings, logs: MongoLogStore,
    store: EtcdStore, keys: Keyspace
) -> None:
    page = dashboard.page
    lost = {"id": "gone-1", "host": "old-host", "pid": 4242, "version": "0", "labels": {},
            "started": 0, "updated": 1, "cpu_percent": 0.0, "host_cpu_percent": 0.0,
            "cpu_count": 2, "rss_bytes": 1 << 20, "host_memory_percent": 10.0,
            "load": [0.0, 0.0, 0.0], "running": 0, "max_runs": 4}
    await store.put(keys.worker("gone-1"), json.dumps(lost).encode())
    await dashboard.service.create(Job.from_dict({
        "name": "tidy", "schedule": "@daily", "command": "true"}), actor="tests")
    await dashboard.service.patch("tidy", {"schedule": "@hourly", "priority": 5},
                                  actor="tests", if_match=None)
    await dashboard.log_in(admin_token)
    async with swarm(settings, logs, 2, labels=[{"zone": "eu"}, {"zone": "us", "gpu": "1"}]):
        # The page shows what the registry says: wait until both workers have
        # measured their clocks against each other (before, they are "unsynced").
        def both_synced(kvs: dict[str, KeyValue]) -> bool:
            clocks = [json.loads(kvs[w].value).get("clock") or {} for w in ("w0", "w1")
                      if w in kvs]
            return len(clocks) == 2 and all(c.get("state") == "ok" for c in clocks)

        await wait_for_prefix(store, keys.workers, both_synced, timeout=30)
        await page.get_by_role("link", name="Workers").click()
        rows = page.locator("table.workers tbody tr")
        await expect(rows).to_have_count(3)
        await expect(page.locator('tr[data-worker="gone-1"]')).to_have_class("stale")
        await expect(page.locator('tr[data-worker="gone-1"] .badge')).to_have_text("stale")
        await expect(page.locator('tr[data-worker="w1"] .badge')).to_have_text("ok")
        await expect(page.locator('tr[data-worker="w1"]')).to_contain_text("gpu=1")
        await dashboard.shoot("workers")
    await page.get_by_role("link", name="Audit").click()
    entry = page.locator("table.audit tbody tr", has_text="job.update")
    await expect(entry).to_contain_text('"@daily" → "@hourly"')
    await expect(entry).to_contain_text("priority: 0 → 5")
    await expect(page.locator("table.audit tbody tr", has_text="job.create")).to_have_count(1)
    await dashboard.shoot("audit")


async def test_editor_shows_a_conflicting_edit_and_saves_nothing(
    dashboard: Dashboard, admin_token: str
) -> None:
    page = dashboard.page
    await dashboard.service.create(Job.from_dict({
        "name": "sync", "schedule": "*/5 * * * *", "command": "true"}), actor="tests")
    await dashboard.log_in(admin_token)
    await dashboard.open("/jobs/sync/edit")
    await expect(page.locator("#preview li")).to_have_count(10)
    await dashboard.service.patch("sync", {"command": "echo theirs"}, actor="tests",
                                  if_match=None)  # someone else, meanwhile
    await page.get_by_label("Command", exact=True).fill("echo mine")
    await page.get_by_role("button", name="Save changes").click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("Someone else changed this job since you opened it")
    await dashboard.shoot("editor-conflict")
    assert (await dashboard.service.get("sync")).job.command == "echo theirs"
    await alert.get_by_role("link", name="Reload to see the current version").click()
    await expect(page.get_by_label("Command", exact=True)).to_have_value("echo theirs")
    await dashboard.ready()
    await page.get_by_label("Command", exact=True).fill("echo mine")
    await page.get_by_role("button", name="Save changes").click()
    await expect(page.get_by_role("alert")).to_contain_text("Saved (revision")
    assert (await dashboard.service.get("sync")).job.command == "echo mine"


async def test_run_page_tails_a_running_job_live_until_it_ends(
    dashboard: Dashboard, admin_token: str, settings: Settings, logs: MongoLogStore,
    tmp_path: Path
) -> None:
    page = dashboard.page
    gate = Gate(tmp_path)
    await dashboard.service.create(Job.from_dict({
        "name": "chatty", "schedule": "0 0 1 1 *",
        "command": f"echo first; {gate.wait_command}; echo second"}), actor="tests")
    await dashboard.log_in(admin_token)
    try:
        async with swarm(settings, logs, 1):
            await page.locator('tr[data-job="chatty"]').get_by_role(
                "button", name="Run chatty now").click()
            running = page.locator('tr[data-job="chatty"]').get_by_role("link",
                                                                        name="running now")
            await running.click()
            await expect(page.locator("#run-status")).to_have_text("running")
            await expect(page.locator("#live-state")).to_have_text("Following the output live.")
            log = page.locator("pre.log")
            await expect(log).to_have_text("first\n")
            await dashboard.shoot("run-live")
            gate.release()
            await expect(log).to_have_text("first\nsecond\n")
            await expect(page.locator("#run-status")).to_have_text("succeeded")
            await expect(page.locator("#live-state")).to_contain_text("The run ended (succeeded)")
    finally:
        gate.close()
    await page.reload()  # the stored record, once written
    await expect(page.locator("pre.log")).to_have_text("first\nsecond\n")


async def tab_to(dashboard: Dashboard, selector: str, *, limit: int = 60) -> None:
    """Press Tab until the element matching ``selector`` has the focus (at most
    ``limit`` times), and check the focus is visible on it."""
    page = dashboard.page
    for _ in range(limit):
        await page.keyboard.press("Tab")
        if await page.evaluate("s => document.activeElement?.matches(s) ?? false", selector):
            break
    else:
        raise AssertionError(f"Tab never reached {selector}")
    ring = await page.evaluate("""() => {
        const s = getComputedStyle(document.activeElement);
        return (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0)
            || s.boxShadow !== 'none';
    }""")
    assert ring, f"{selector} has the focus but shows no focus ring"


async def test_keyboard_alone_logs_in_runs_a_job_and_opens_its_page(
    dashboard: Dashboard, admin_token: str, settings: Settings, logs: MongoLogStore
) -> None:
    page = dashboard.page
    await dashboard.service.create(Job.from_dict({
        "name": "nightly", "schedule": "30 2 * * *", "command": "echo by keyboard"}),
        actor="tests")
    await dashboard.open("/login")
    await tab_to(dashboard, "input[name=token]")
    await page.keyboard.type(admin_token)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    await dashboard.ready()
    async with swarm(settings, logs, 1):
        await tab_to(dashboard, 'tr[data-job="nightly"] button[data-action=run]')
        await page.keyboard.press("Enter")
        await expect(page.get_by_role("status")).to_contain_text("nightly: run nightly@")
        last = page.locator('tr[data-job="nightly"] [data-cell="last"] a.badge')
        await expect(last).to_have_text("succeeded")  # the live columns follow the run
    await page.reload()  # start the walk from the top again
    await dashboard.ready()
    await tab_to(dashboard, 'tr[data-job="nightly"] [data-cell="last"] a.badge')
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name=re.compile("Run of nightly"))).to_be_visible()
    await expect(page.locator("pre")).to_contain_text("by keyboard")

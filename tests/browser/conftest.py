"""Browser tests: headless Chromium (Debian's ``chromium``) driven by Playwright.

Each test gets a real master (``running_master``) on real etcd and MongoDB, a
fresh browser with a fresh profile, and a page. ``Dashboard.shoot`` saves a
screenshot of the page at a laptop and a phone width into
``test-artifacts/screenshots/`` and checks that nothing overflows the window
sideways; the folder is printed at the end of the run.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from cronswarm.common import Keyspace, Settings
from cronswarm.coord import EtcdStore
from cronswarm.logstore import MongoLogStore
from cronswarm.master import JobService
from tests.apiclient import Api, running_master

ROOT = Path(__file__).resolve().parent.parent.parent
SHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM = os.environ.get("CRONSWARM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]
WIDTHS = {"laptop": (1280, 800), "phone": (390, 844)}
TIMEOUT_MS = 30_000  # generous: two slow shared cores

expect.set_options(timeout=TIMEOUT_MS)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SHOTS.is_dir() and any(SHOTS.glob("*.png")):
        terminalreporter.write_sep("-", "dashboard screenshots")
        terminalreporter.write_line(f"{len(list(SHOTS.glob('*.png')))} screenshots in {SHOTS}")


@pytest.fixture
async def chromium(tmp_path: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        # Playwright gives every launch a fresh temporary profile.
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                           downloads_path=str(tmp_path))
        try:
            yield browser
        finally:
            await browser.close()


# Visible form controls without a <label> (or aria-label/-labelledby), and
# buttons and links without an accessible name: what a screen reader or a
# keyboard user could not identify.
UNLABELLED = """() => {
  const shown = el => el.getClientRects().length > 0;
  const named = el => (el.getAttribute('aria-label') || '').trim() ||
      el.getAttribute('aria-labelledby') || (el.title || '').trim();
  const out = [];
  for (const el of document.querySelectorAll('input, select, textarea')) {
    if (el.type === 'hidden' || !shown(el)) continue;
    if (!(el.labels && el.labels.length) && !named(el)) out.push(el.outerHTML.slice(0, 120));
  }
  for (const el of document.querySelectorAll('button, a[href], [role=button], [role=switch]')) {
    if (!shown(el)) continue;
    if (!el.innerText.trim() && !named(el)) out.push(el.outerHTML.slice(0, 120));
  }
  return out;
}"""


# What would not "look right" at a width: two visible controls or headings
# drawn over each other, and text cut off by its box (clipped or ellipsed;
# a box that scrolls is fine).
MISDRAWN = """() => {
  // Visually hidden on purpose (kept for screen readers): clipped to nothing.
  const clippedAway = el => {
    for (let a = el; a; a = a.parentElement) {
      const s = getComputedStyle(a), r = a.getBoundingClientRect();
      if ((s.clip && s.clip !== 'auto') || (s.clipPath && s.clipPath !== 'none')) return true;
      if (s.overflow !== 'visible' && (r.width <= 1 || r.height <= 1)) return true;
    }
    return false;
  };
  const shown = el => {
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && getComputedStyle(el).visibility !== 'hidden'
        && !clippedAway(el);
  };
  const describe = el => el.outerHTML.slice(0, 100);
  const out = [];
  const boxes = [...document.querySelectorAll(
      'button, a[href], input:not([type=hidden]), select, textarea, h1, h2, h3, th, ' +
      '.badge, [role=switch]')].filter(shown);
  for (let i = 0; i < boxes.length; i++) {
    const a = boxes[i].getBoundingClientRect();
    for (let j = i + 1; j < boxes.length; j++) {
      if (boxes[i].contains(boxes[j]) || boxes[j].contains(boxes[i])) continue;
      const b = boxes[j].getBoundingClientRect();
      const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
      const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
      if (w > 1 && h > 1) out.push(`${describe(boxes[i])} overlaps ${describe(boxes[j])}`);
    }
  }
  for (const el of document.querySelectorAll('body *')) {
    if (!shown(el) || !el.firstChild || el.matches('input, select, textarea')) continue;
    const style = getComputedStyle(el);
    const scrolls = ['auto', 'scroll'].includes(style.overflowX);
    const clips = style.overflowX !== 'visible' || style.textOverflow === 'ellipsis';
    if (clips && !scrolls && el.scrollWidth > el.clientWidth + 1) {
      out.push(`cut off: ${describe(el)}`);
    }
  }
  return out;
}"""


@dataclass
class Dashboard:
    """A browser page on a real master, and the services behind it."""

    page: Page
    base: str
    api: Api
    service: JobService

    async def open(self, path: str) -> None:
        await self.page.goto(self.base + path)
        await self.ready()

    async def ready(self) -> None:
        """Wait until the page's script (if any) has attached its handlers: a
        click before that would do nothing."""
        await self.page.wait_for_function(
            "() => !document.querySelector('script[type=module]')"
            " || document.documentElement.dataset.scriptReady === 'true'")

    async def log_in(self, token: str) -> None:
        await self.open("/login")
        await self.page.get_by_label("API token").fill(token)
        await self.page.get_by_role("button", name="Log in").click()
        await expect(self.page.get_by_role("button", name="Log out")).to_be_visible()
        await self.ready()

    async def shoot(self, name: str) -> None:
        """Screenshots at both widths; fails if the page is wider than the window,
        draws controls over each other or cuts text off (``MISDRAWN``), or has a
        control without a label (``UNLABELLED``)."""
        unlabelled = await self.page.evaluate(UNLABELLED)
        assert not unlabelled, f"{name}: controls without a label: {unlabelled}"
        SHOTS.mkdir(parents=True, exist_ok=True)
        for label, (width, height) in WIDTHS.items():
            await self.page.set_viewport_size({"width": width, "height": height})
            overflow = await self.page.evaluate(
                "document.documentElement.scrollWidth - window.innerWidth")
            await self.page.screenshot(path=SHOTS / f"{name}-{label}-{width}.png",
                                       full_page=True)
            assert overflow <= 0, f"{name} is {overflow}px wider than a {width}px window"
            misdrawn = await self.page.evaluate(MISDRAWN)
            assert not misdrawn, f"{name} at {width}px: {misdrawn}"
        await self.page.set_viewport_size({"width": 1280, "height": 800})


@pytest.fixture
async def dashboard(chromium: Browser, settings: Settings, store: EtcdStore,
                    logs: MongoLogStore, admin_token: str) -> AsyncIterator[Dashboard]:
    async with running_master(settings, admin_token) as api:
        context = await chromium.new_context(viewport={"width": 1280, "height": 800})
        page = await context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        service = JobService(store, logs, Keyspace(settings.key_prefix))
        try:
            yield Dashboard(page, api.base, api, service)
        finally:
            await context.close()
        assert not errors, f"JavaScript errors on the page: {errors}"

"""The dashboard in a real browser, against a real master, etcd, MongoDB and workers."""

from __future__ import annotations

import re

from playwright.async_api import expect

from tests.browser.conftest import Dashboard


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

"""Fixtures of the browser tests: the built client, a Chromium per test, signed-in pages
and screenshots (test-artifacts/web/<test>/NN-step.png)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from tests.web.harness import (
    ARTIFACTS,
    CHROMIUM,
    UI_TIMEOUT_MS,
    Account,
    Homeserver,
    build_web_client,
    require_browser,
)


@pytest.fixture(scope="session")
def web_dist() -> Path:
    require_browser()
    return build_web_client()


@pytest.fixture
def server_factory(tmp_path: Path, web_dist: Path) -> Iterator[Any]:
    started: list[Homeserver] = []

    def make(server_name: str = "web.test", port: int | None = None, **overrides: Any) -> Homeserver:
        workdir = tmp_path / f"hs{len(started)}"
        workdir.mkdir()
        hs = Homeserver(workdir, server_name, overrides) if port is None else Homeserver(
            workdir, server_name, overrides, port=port,
        )
        started.append(hs)
        hs.start()
        return hs

    yield make
    for hs in started:
        hs.stop()


@attrs.define
class Shots:
    folder: Path
    count: int = 0

    async def take(self, page: Any, label: str) -> None:
        self.count += 1
        self.folder.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(self.folder / f"{self.count:02d}-{label}.png"))


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Shots:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    folder = ARTIFACTS / name
    for old in folder.glob("*.png"):
        old.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    return Shots(folder)


@pytest.fixture
async def browser(web_dist: Path) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def open_client(browser: Any, shots: Shots) -> AsyncIterator[Any]:
    """``await open_client(hs, account)``: a page of hs's web client, signed in as
    account (the session put in localStorage, as the login form would), or at the login
    form when account is None. CSP violations and page errors fail the test."""
    problems: list[str] = []
    pages: list[Any] = []

    async def make(hs: Homeserver, account: Account | None = None, width: int = 1100, height: int = 760) -> Any:
        context = await browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
        if account is not None:
            session = json.dumps(account.session())
            await context.add_init_script(f"localStorage.setItem('tricolor.session', {json.dumps(session)});")
        page = await context.new_page()
        page.set_default_timeout(UI_TIMEOUT_MS)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("console", lambda m: problems.append(f"console: {m.text}")
                if m.type == "error" and "Content Security Policy" in m.text else None)
        await page.goto(hs.web_url)
        pages.append(page)
        return page

    yield make
    for i, page in enumerate(pages):  # how each page ended, passed or failed
        try:
            await page.screenshot(path=str(shots.folder / f"final-page{i + 1}.png"))
        except Exception:  # a page that closed has nothing to show
            pass
    assert not problems, "\n".join(problems)

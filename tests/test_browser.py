"""The live cluster page: its protection over HTTP, and a real headless chromium
against a real 3-node cluster.

Set ``SHAZBOT_SCREENSHOT=path.png`` to keep the screenshot (docs/screenshot.png comes from it).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from cluster import CONTROL, SECRET, wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
HEADLESS_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--window-size=1100,640",
]


def test_page_and_state_need_the_control_secret(make_node: Any) -> None:
    node = make_node()
    for path in ("clustershazbot/", "clustershazbot/state.json"):
        for auth in (None, ("admin", "wrong"), ("admin", SECRET)):
            r = requests.get(node.base_url + path, auth=auth, timeout=5)
            assert r.status_code == 401
            assert r.headers["WWW-Authenticate"].startswith('Basic realm="clustershazbot"')
            assert node.base_url not in r.text and "online" not in r.text
    page = requests.get(node.base_url + "clustershazbot/", auth=("anyone", CONTROL), timeout=5)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "<script" in page.text and "http://" not in page.text.replace(node.base_url, "")
    assert page.headers["Cache-Control"] == "no-store"
    state = requests.get(node.base_url + "clustershazbot/state.json", auth=("", CONTROL), timeout=5)
    data = state.json()
    assert (data["node"], data["status"], data["online"], data["offline"]) == (
        node.base_url,
        "ok",
        1,
        0,
    )
    assert data["members"][0]["self"] is True and data["members"][0]["age"].endswith("ago")


def test_page_path_is_configurable_and_can_be_disabled(make_node: Any) -> None:
    moved = make_node(SHAZBOT_UI_PATH="/ops/cluster/")
    off = make_node(SHAZBOT_UI_PATH="false")
    auth = ("x", CONTROL)
    assert requests.get(moved.base_url + "ops/cluster/", auth=auth, timeout=5).status_code == 200
    assert requests.get(moved.base_url + "clustershazbot/", auth=auth, timeout=5).status_code == 404
    assert requests.get(off.base_url + "clustershazbot/", auth=auth, timeout=5).status_code == 404
    # The protocol's endpoints are untouched.
    assert requests.get(off.base_url + "clustershazbot/list", timeout=5).status_code == 200


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(
            "chromium and chromedriver are not installed (Debian: chromium chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="shazbot-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*HEADLESS_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def rows(driver: Any) -> dict[str, str]:
    """{base URL: state} as the page shows it now (read in one script: the table is replaced)."""
    return dict(
        driver.execute_script(
            "const out = {};"
            "document.querySelectorAll('#members tbody tr')"
            ".forEach(r => { out[r.dataset.baseUrl] = r.dataset.state; });"
            "return out;"
        )
    )


def row_text(driver: Any, base_url: str) -> tuple[str, str]:
    """The text and class of one member's row."""
    return tuple(
        driver.execute_script(
            "const r = [...document.querySelectorAll('#members tbody tr')]"
            ".find(r => r.dataset.baseUrl === arguments[0]);"
            "return [r.innerText, r.className];",
            base_url,
        )
    )


def text(driver: Any, element_id: str) -> str:
    return str(
        driver.execute_script(
            "return document.getElementById(arguments[0]).textContent;", element_id
        )
    )


def test_page_lists_members_and_follows_a_node_going_offline(
    browser: Any, make_node: Any, tmp_path: Path
) -> None:
    nodes = [make_node(SHAZBOT_MONITOR=(i == 0)) for i in range(3)]
    urls = {n.base_url for n in nodes}
    wait_until(lambda: all(set(n.view(False)) == urls for n in nodes), what="convergence")
    first, last = nodes[0], nodes[2]

    # Credentials in the URL are for the browser only; the page fetches state.json itself.
    page = first.base_url.replace("http://", f"http://operator:{CONTROL}@") + "clustershazbot/"
    browser.get(page)
    wait_until(lambda: rows(browser) == dict.fromkeys(urls, "online"), what="three rows online")
    assert text(browser, "online-count") == "3" and text(browser, "offline-count") == "0"
    assert text(browser, "status") == "engine running"
    assert text(browser, "last-round").endswith("ago")
    monitor_text, monitor_class = row_text(browser, first.base_url)
    assert "monitor" in monitor_text and monitor_class == "self"

    browser.execute_script("window.notReloaded = true;")
    last.stop()  # graceful: it announces that it goes offline
    expected = {**dict.fromkeys(urls, "online"), last.base_url: "offline"}
    wait_until(lambda: rows(browser) == expected, what="the page to show the node offline")
    wait_until(lambda: text(browser, "offline-count") == "1", what="the summary to follow")
    assert text(browser, "online-count") == "2"
    assert browser.execute_script("return window.notReloaded === true;")

    shot = Path(os.environ.get("SHAZBOT_SCREENSHOT") or tmp_path / "screenshot.png")
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 1000

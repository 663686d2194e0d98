"""The status page at ``/``, in a real headless Chromium (Debian ``chromium``): it loads with no console error,
shows a failed guest in red with PVE's words, escapes what users name, says each time's zone, draws the 80%
line, and reloads itself. The screenshot is kept in the test's temporary directory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.chromium import Page, browser
from tests.helpers.fake_pve import FakeApi, failed_backup, fake_cluster
from tests.helpers.tools import require_tool
from tests.helpers.waits import wait_until
from vzkeep.exporter import Exporter, Poller, Snapshot
from vzkeep.exporter.snapshot import DrillInfo
from vzkeep.exporter.status_page import render

HOSTILE = '<img src=x onerror="console.error(\'injected\')">&amp; "web"'
FAILED_VMID = 100
LOCKED = "VM is locked (backup)"


def cluster() -> FakeApi:
    """Guest 100's newest backup failed inside its multi-guest job task; guest 103 has a hostile name;
    backup-lab is 85% full (the others 20%)."""
    return fake_cluster(change=failed_guest_hostile_name_full_storage)


def failed_guest_hostile_name_full_storage(answers: dict[str, Any]) -> None:
    for entry in answers["cluster/resources"]:
        if entry.get("vmid") == 103:
            entry["name"] = HOSTILE
        if entry.get("storage") == "backup-lab":
            entry["disk"] = int(entry["maxdisk"] * 0.85)
    failed_backup(FAILED_VMID, LOCKED)(answers)


@pytest.fixture(scope="module")
def exporter() -> Iterator[Exporter]:
    with Exporter(Poller(cluster()), "127.0.0.1:0", interval=3600) as running:
        wait_until(lambda: running.loop.polls > 0, 10, "the first poll")
        yield running


@pytest.fixture(scope="module")
def page(exporter: Exporter) -> Iterator[Page]:
    require_tool("chromium")
    with browser() as chrome:
        yield chrome.open(exporter.page_url)


def test_the_poll_saw_the_failure(exporter: Exporter) -> None:
    snapshot: Snapshot = exporter.poller.snapshot
    attempt = next(a for a in snapshot.attempts if a.vmid == FAILED_VMID)
    assert (attempt.ok, attempt.error) == (False, LOCKED)


def test_the_page_loads_without_console_errors(page: Page) -> None:
    assert page.errors == []
    assert page.evaluate("document.title") == "vzkeep: backups"


def test_a_failed_guest_is_red_with_pves_words(page: Page) -> None:
    row: dict[str, Any] = page.evaluate(f"""(() => {{
        const row = [...document.querySelectorAll('table.guests tbody tr')]
            .find(r => r.cells[1].textContent === '{FAILED_VMID}');
        const style = getComputedStyle(row.cells[6]);
        return {{cls: row.className, text: row.cells[6].textContent, background: style.backgroundColor,
                 color: style.color}};
    }})()""")
    assert row["cls"] == "failed"
    assert row["text"] == f"FAILED: {LOCKED}"
    red, green, blue = (int(x) for x in row["background"].removeprefix("rgb(").rstrip(")").split(","))
    assert red > green + 20 and red > blue + 20, row  # a red background
    healthy = page.evaluate("""[...document.querySelectorAll('table.guests tbody tr')]
        .filter(r => r.className !== 'failed').map(r => getComputedStyle(r.cells[6]).backgroundColor)""")
    assert healthy and all(c in ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)") for c in healthy), healthy


def test_user_data_is_shown_as_text_never_as_markup(page: Page) -> None:
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    names = page.evaluate("[...document.querySelectorAll('table.guests tbody tr')].map(r => r.cells[0].textContent)")
    assert HOSTILE in names


def test_times_say_their_zone_and_the_page_reloads_itself(page: Page) -> None:
    text = page.evaluate("document.body.innerText")
    assert "Now: 2026-11-18 " in text and " CET (Europe/Paris, cluster clock)" in text
    next_runs = page.evaluate("[...document.querySelectorAll('table.jobs tbody tr')].map(r => r.cells[3].textContent)")
    assert next_runs and all(run.endswith(" CET") for run in next_runs), next_runs
    assert page.evaluate("document.querySelector('meta[http-equiv=refresh]').content") == "3600"


def test_storage_fill_is_drawn_against_the_80_percent_line(page: Page) -> None:
    bars = page.evaluate("""Object.fromEntries([...document.querySelectorAll('table.storages tbody tr')].map(r => [
        r.cells[0].textContent, {used: parseFloat(r.querySelector('.used').style.width),
        limit: r.querySelector('.limit').style.left, over: r.querySelector('.used').classList.contains('over'),
        label: getComputedStyle(r.cells[1].firstElementChild || r.cells[1]).color}]))""")
    assert set(bars) == {"backup-prod", "backup-lab", "backup-monitoring"}
    assert all(b["limit"] == "80%" for b in bars.values())
    assert (bars["backup-lab"]["used"], bars["backup-lab"]["over"]) == (85.0, True)
    assert (bars["backup-prod"]["used"], bars["backup-prod"]["over"]) == (20.0, False)
    assert bars["backup-lab"]["label"] != bars["backup-prod"]["label"]  # the percentage over the line is red


def test_the_screenshot_is_saved(page: Page, tmp_path: Path) -> None:
    shot = page.screenshot(tmp_path / "status-page.png")
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000


def test_render_escapes_without_a_browser() -> None:
    html = render(Poller(cluster()).poll()).decode()
    assert HOSTILE not in html
    assert "&lt;img src=x onerror=&quot;console.error(&#x27;injected&#x27;)&quot;&gt;&amp;amp; &quot;web&quot;" in html


@pytest.mark.parametrize(("seconds", "shown"), [(1.4, "in 1 s"), (75, "in 75 s"), (5400, "in 90 min")])
def test_a_drill_says_how_long_it_took_in_a_unit_that_shows_it(seconds: float, shown: str) -> None:
    snapshot = Poller(cluster()).poll()
    vmid = snapshot.guests[0].vmid
    snapshot = dataclasses.replace(snapshot, drills=(DrillInfo(snapshot.guests[0].env, vmid, True, seconds,
                                                               snapshot.clock.time if snapshot.clock else 1.0),))
    html = render(snapshot).decode()
    assert f'<span class="ok">OK</span> {shown},' in html
    assert "0.0 min" not in html


def test_the_check_would_see_a_console_error() -> None:
    # The same browser check on a page that errs: a console.error, an exception and a missing resource.
    require_tool("chromium")
    html = ("<html><head><title>x</title></head><body><img src='/nowhere.png'><script>console.error('boom');"
            "null.x;</script></body></html>")
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            body = html.encode() if self.path == "/" else b"no"
            self.send_response(200 if self.path == "/" else 404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with browser() as chrome:
            # a longer settle than the status page's own check: here every error must arrive (on a busy
            # machine the 404's log entry can come well after the load event)
            errors = chrome.open(f"http://127.0.0.1:{server.server_address[1]}/", settle=3.0).errors
    finally:
        server.shutdown()
        server.server_close()
    assert any("boom" in e for e in errors), errors
    assert any(e.startswith("exception:") for e in errors), errors
    assert any("404" in e or "nowhere.png" in e for e in errors), errors

"""The coder page in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright) against a
live `python -m service serve` on 127.0.0.1: log in through the one-time URL, paste a real note, see
codes with highlighted evidence, accept one line, reject another (by keyboard), submit, restart the
server, and find the decisions in the store."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.issue(4)

CHROMIUM = os.environ.get("BTXCODE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python package) is in the dev extra")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def test_coder_page_end_to_end(browser, tmp_path, live_server_cls, sample):
    import httpx

    sync_api = pytest.importorskip("playwright.sync_api")
    note = sample("01")
    home = tmp_path / "var"
    server = live_server_cls(home).start()
    try:
        assert server.admin_key and server.login_url, "".join(server.output)
        page = browser.new_page()
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        external: list[str] = []
        page.on("request", lambda r: external.append(r.url) if not r.url.startswith(server.url) else None)

        page.goto(server.login_url)
        page.wait_for_selector("#app:not([hidden])")
        assert "admin" in page.inner_text("#who")

        page.fill("#note", note)
        page.fill("#dos", "2008-06-01")
        with page.expect_response(lambda r: r.url.endswith("/v1/suggest")) as resp_info:
            page.click("#suggest-btn")
        result = resp_info.value.json()
        page.wait_for_selector("tr.line")
        rows = page.locator("tr.line")
        assert rows.count() == len(result["lines"]) >= 2
        shown = [rows.nth(i).locator(".code").inner_text() for i in range(rows.count())]
        assert shown == [ln["code"] for ln in result["lines"]]
        assert "64614" in shown
        assert page.locator("#warnings li").count() == len(result["warnings"]) >= 1

        # evidence: hovering a line highlights exactly its evidence in the note
        assert page.locator("mark.ev").count() > 0
        rows.nth(0).hover()
        active = page.locator("mark.ev.active")
        assert active.count() > 0
        highlighted = " ".join(active.nth(i).inner_text() for i in range(active.count()))
        for ev in result["lines"][0]["evidence"]:
            assert ev["text"] in highlighted
        # selecting (focusing) another line moves the highlight
        rows.nth(1).focus()
        active2 = " ".join(page.locator("mark.ev.active").all_inner_texts())
        assert result["lines"][1]["evidence"][0]["text"] in active2

        # accept line 0 with the mouse, reject line 1 from the keyboard
        rows.nth(0).get_by_role("button", name=f"Accept {shown[0]}").click()
        rows.nth(1).focus()
        page.keyboard.press("r")
        assert rows.nth(0).get_attribute("data-decision") == "accepted"
        assert rows.nth(1).get_attribute("data-decision") == "rejected"
        page.click("#submit-btn")
        sync_api.expect(page.locator("#submit-status")).to_have_text("Saved 2 decisions.")  # CSP forbids eval
        page.screenshot(path=str(tmp_path / "coder-page.png"), full_page=True)

        # a dropped/opened file that is not text is refused in the page, before any request
        binary = tmp_path / "scan.txt"
        binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
        page.click("#edit-note")
        page.set_input_files("#file", str(binary))
        sync_api.expect(page.locator("#status")).to_contain_text("not UTF-8 text")
        good = tmp_path / "note.txt"
        good.write_text(note, encoding="utf-8")
        page.set_input_files("#file", str(good))
        sync_api.expect(page.locator("#note")).to_have_value(note)

        # the offline API docs render without errors or outside requests
        page.goto(server.url + "/docs")
        page.wait_for_selector(".opblock", timeout=20_000)
        assert not problems, problems  # no CSP violations or script errors, page or docs
        assert not external, external  # nothing fetched from anywhere else
        page.close()
        sid = result["suggestion_id"]
    finally:
        server.stop()

    again = live_server_cls(home).start()  # same BTXCODE_HOME, new process
    try:
        rec = httpx.get(f"{again.url}/v1/suggestions/{sid}",
                        headers={"Authorization": f"Bearer {server.admin_key}"}, timeout=10).json()
    finally:
        again.stop()
    assert [(d["line"], d["decision"]) for d in rec["decisions"]] == [(0, "accepted"), (1, "rejected")]
    assert rec["decisions"][0]["code"] == result["lines"][0]["code"] and rec["channel"] == "web"
    assert rec["note_sha256"] == result["note_sha256"]
    assert note[:40] not in str(rec)

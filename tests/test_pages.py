"""The sidecar's pages in a real browser: Debian's Chromium, headless, driven through Selenium
and its chromedriver (both installed by scripts/bootstrap.sh). Real transfers by the softphones
show on the wallboard; screenshots go to var/screens/ for a person to look at."""

from __future__ import annotations

import json
import time
import urllib.parse
import uuid

import pytest

from conftest import ROOT
from contracts.names import OUTCOMES
from test_access import _cli
from test_sidecar import publish, publish_matters, stack, synthetic_record  # noqa: F401 - fixture

pytestmark = pytest.mark.lab

SCREENS = ROOT / "var" / "screens"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1280,720", "--lang=zh-CN", "--disable-gpu"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    SCREENS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def supervisor(stack):  # noqa: F811
    """A city-wide supervisor's token (role supervisor, no centre): what a wall screen holds."""
    run = uuid.uuid4().hex[:6]
    token = _cli("add", f"wallboard-{run}", "--role", "supervisor")
    yield token
    _cli("revoke", f"wallboard-{run}")


def board_url(stack, token: str) -> str:  # noqa: F811
    host, port = stack.settings.sidecar.listen
    return f"http://{host}:{port}/board#token={token}"


def wait_for(driver, condition, timeout: float, what: str, every: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(condition)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


def console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def open_board(browser, stack, token: str) -> None:  # noqa: F811
    browser.get("about:blank")                  # a new page, not a new fragment of the last one
    browser.get(board_url(stack, token))
    wait_for(browser, "return document.getElementById('connection').dataset.state === 'live'",
             10, "the board's live stream")
    # The address bar no longer holds the token once the page has kept it.
    assert "token=" not in browser.current_url


def test_the_wallboard_shows_a_real_transfer_within_a_second(  # noqa: F811
        browser, stack, supervisor, phones, outcomes):
    from test_transfer import transfer_by_key

    open_board(browser, stack, supervisor)
    # Both hotlines' queues and agents, from the acting service instance.
    wait_for(browser, "return document.querySelectorAll('[data-hotline] [data-k=agents]')"
                      ".length === 2", 5, "both hotlines' live gauges")
    call, agent, far_agent, far_leg = transfer_by_key(phones, phones.citizen, "12345", "12345",
                                                      "110")
    # The 110 agent rings: its hotline's busy count is on the board within the next status.
    far_leg.accept()
    call.hears(far_leg)
    [rec] = outcomes.wait(phones.lib)
    tid = rec["transfer_id"]
    [(entry_id, _)] = [(i, f) for i, f in stack.redis.xrevrange(OUTCOMES.key, count=200)
                       if json.loads(f[OUTCOMES.field.encode()])["transfer_id"] == tid]
    recorded_ms = int(entry_id.decode().split("-")[0])
    # When the page first had it (its own clock, this machine's: Redis's entry id is too).
    shown_ms = wait_for(browser, "return document.querySelector("
                                 f"'[data-transfer-id=\"{tid}\"]')?.dataset.seen", 5,
                        "the transfer on the wallboard")
    latency_ms = int(shown_ms) - recorded_ms
    assert latency_ms <= 1000, f"{latency_ms:.0f} ms from the record to the screen"
    row = wait_for(browser, "return document.querySelector('[data-direction=\"12345 → 110\"]')"
                            "?.textContent", 2, "the direction's row")
    assert row.startswith("12345 → 110")
    text = browser.find_element("css selector", f"[data-transfer-id='{tid}']").text
    assert "已接受" in text                                   # zh-CN first
    browser.save_screenshot(str(SCREENS / "board-1280x720.png"))
    browser.set_window_size(1920, 1080)
    browser.save_screenshot(str(SCREENS / "board-1920x1080.png"))
    browser.set_window_size(1280, 720)
    (SCREENS / "board-latency.json").write_text(json.dumps(
        {"transfer_id": tid, "record_to_screen_ms": round(latency_ms, 1)}))
    # English beside it, for the admins.
    browser.find_element("id", "lang").click()
    assert browser.find_element("css selector", "h1").text == "Hotline wallboard"
    assert "accepted" in browser.find_element("css selector", f"[data-transfer-id='{tid}']").text
    browser.find_element("id", "lang").click()
    assert console_errors(browser) == []


def test_an_emergency_alert_shows_first_on_the_wallboard(browser, stack, supervisor,  # noqa: F811
                                                         phones, outcomes):
    from test_delivery import connect

    open_board(browser, stack, supervisor)
    publish(stack.redis, [synthetic_record(result="fallback_busy")])      # transfer_failed
    wait_for(browser, "return !!document.querySelector('#alert-list [data-kind=transfer_failed]')",
             10, "the transfer_failed alert")
    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    leg.send_dtmf("*3")
    far_agent, far_leg = phones.ringing_agent("110", timeout=8)
    tid = far_leg.header("X-Hotline-Transfer-Id")
    first = wait_for(browser, "const li = document.querySelector('#alert-list li');"
                              "return li && li.dataset.kind === 'emergency' && li.textContent",
                     10, "the emergency alert, first")
    assert tid in first and "紧急警情" in first
    # 12345's agent stays with the caller while 110 is called in: a three-way call going.
    wait_for(browser, "return document.querySelector('[data-hotline=\"12345\"] "
                      "[data-k=three_way] b')?.textContent === '1'", 5,
             "the three-way call among 12345's figures")
    publish(stack.redis, [synthetic_record(result="fallback_no_answer")])
    wait_for(browser, "return document.querySelectorAll('#alert-list [data-kind=transfer_failed]')"
                      ".length >= 2", 10, "a later alert")
    # Newer, and still under the emergency.
    kinds = browser.execute_script(
        "return [...document.querySelectorAll('#alert-list li')].map(li => li.dataset.kind)")
    assert kinds[0] == "emergency"
    browser.save_screenshot(str(SCREENS / "board-emergency.png"))
    assert console_errors(browser) == []


def test_a_refused_token_gets_the_form_not_the_figures(browser, stack):  # noqa: F811
    browser.get("about:blank")
    browser.get(board_url(stack, "not-a-token"))
    wait_for(browser, "return !document.getElementById('login').hidden && "
                      "!document.getElementById('login-error').hidden", 5, "the login form")
    assert browser.find_element("id", "main").get_attribute("hidden") is not None
    # The 401 the page got is the browser's only complaint.
    assert all("401" in e for e in console_errors(browser))


def test_the_analysis_page_draws_the_records_the_test_made(browser, stack, supervisor):  # noqa: F811
    """Records of two categories, one area and one caller: the charts (ECharts, served by the
    sidecar) and the tables show them."""
    caller = f"1370000{uuid.uuid4().int % 10000:04d}"
    publish_matters(stack, ["city_environment", "construction", "construction"] * 2, caller,
                    "夜间施工噪音", "和平里")
    browser.get("about:blank")
    browser.get(board_url(stack, supervisor).replace("/board#", "/report#"))
    wait_for(browser, "return !!document.getElementById('main').dataset.loaded", 10,
             "the figures")
    series = wait_for(browser, """
        const c = echarts.getInstanceByDom(document.getElementById('chart-day'));
        return c && c.getOption().series.map(s => [s.id, s.data.reduce((a, b) => a + b, 0)]);
        """, 5, "the chart by day")
    totals = dict(series)
    assert totals["construction"] >= 4 and totals["city_environment"] >= 2
    pie = browser.execute_script("""
        return echarts.getInstanceByDom(document.getElementById('chart-direction'))
            .getOption().series[0].data.map(d => [d.name, d.value]);""")
    assert dict(pie).get("110→12345", 0) >= 6
    hotspot = browser.execute_script("return [...document.querySelectorAll('#hotspot-table tr')]"
                                      ".map(r => r.textContent)")
    assert any(row.startswith("和平里") for row in hotspot), hotspot
    callers = browser.execute_script("return document.getElementById('caller-table').textContent")
    # A city-wide reader sees the number masked, and how often it called.
    assert f"{caller[:3]}******{caller[-2:]}6" in callers and caller not in callers
    browser.save_screenshot(str(SCREENS / "report-1280x720.png"))
    assert console_errors(browser) == []


@pytest.fixture(scope="module")
def desktops(stack):  # noqa: F811
    """A desktop token of each centre: what an agent's PC holds."""
    run = uuid.uuid4().hex[:6]
    tokens = {h: _cli("add", f"desk-{h}-{run}", "--role", "desktop", "--hotline", h)
              for h in ("12345", "110")}
    yield tokens
    for h in tokens:
        _cli("revoke", f"desk-{h}-{run}")


def open_agent_screen(browser, stack, token: str, agent: str) -> None:  # noqa: F811
    browser.get("about:blank")
    browser.get(board_url(stack, token).replace("/board#", f"/agent?agent={agent}#"))
    wait_for(browser, "return document.getElementById('connection').dataset.state === 'live'",
             10, "the agent screen's live stream")


def pop_is(browser, call_id: str | None, phase: str, timeout: float = 5) -> None:
    wait_for(browser, "const p = document.getElementById('pop');"
                      f"return p.dataset.phase === '{phase}'"
                      + (f" && p.dataset.callId === '{call_id}'" if call_id else ""),
             timeout, f"the screen-pop {phase}")


def test_the_agent_screen_tags_the_call_and_its_button_transfers_it(  # noqa: F811
        browser, stack, desktops, phones, outcomes, lab):
    """The 12345 agent's screen shows the call it is on, suggests where the matter belongs as
    the agent types, saves the matter and transfers by its button; the 110 agent's screen pops
    up with the matter while it rings."""
    from test_delivery import connect
    from test_sidecar import caller_call_id

    call, agent, leg = connect(phones, phones.citizen, "12345", "12345")
    call_id = caller_call_id(lab, "12345")
    open_agent_screen(browser, stack, desktops["12345"], agent.username)
    pop_is(browser, call_id, "talking")
    # Typed in traditional characters: the suggestion reads them as simplified and says so, the
    # matter keeps them as typed.
    summary = "解放路與人民路路口紅綠燈全滅，車輛堵成一團"
    browser.find_element("id", "summary").send_keys(summary)
    shown = wait_for(browser, "const s = document.getElementById('suggestion-text');"
                              "return s.dataset.platform && [s.dataset.platform, "
                              "s.dataset.category, s.dataset.readAs, s.title]", 5,
                     "the recommender's suggestion")
    rec = stack.api("GET", "/recommendation?text=" + urllib.parse.quote(summary))[1]
    assert shown[:3] == [rec["platform"], rec["category"], rec["read_as"]]
    assert rec["category"] == "road_traffic" and rec["read_as"] == "解放路与人民路路口红绿灯全灭，车辆堵成一团"
    assert shown[3].startswith("读作: " + rec["read_as"])
    browser.find_element("id", "adopt").click()
    assert browser.find_element("id", "category").get_attribute("value") == "road_traffic"
    browser.find_element("id", "address").send_keys("解放路与人民路路口")
    browser.find_element("id", "save").click()
    wait_for(browser, "return document.getElementById('save-state').dataset.state === 'saved'",
             5, "the matter saved")
    tagged = stack.api("GET", f"/calls/{call_id}/matter")[1]
    assert (tagged["category"], tagged["summary"], tagged["address"]) == (
        "road_traffic", summary, "解放路与人民路路口")
    assert tagged["updated_by"] == {"hotline": "12345", "agent": agent.username}
    browser.save_screenshot(str(SCREENS / "agent-1280x720.png"))
    origin_tab = browser.current_window_handle
    browser.find_element("css selector", "[data-action=transfer]").click()
    leg.wait_ended(5)
    far_agent, far_leg = phones.ringing_agent("110", timeout=8)
    assert far_leg.header("X-Hotline-Category") == "road_traffic"
    assert wait_for(browser, "const r = document.getElementById('result');"
                             "return r.dataset.status !== 'sent' && r.dataset.status", 5,
                    "the button's result") == "started"

    # The 110 agent's screen, opened while it rings: the screen-pop has the matter.
    browser.switch_to.new_window("tab")
    open_agent_screen(browser, stack, desktops["110"], far_agent.username)
    pop_is(browser, None, "ringing")
    fields = browser.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#pop dd')]"
        ".map(d => [d.dataset.k, d.textContent]))")
    assert fields["summary"] == summary and fields["address"] == "解放路与人民路路口"
    assert fields["from"].startswith("12345 · ") and "道路交通" in fields["category"]
    assert browser.find_element("id", "summary").get_attribute("value") == summary
    browser.save_screenshot(str(SCREENS / "agent-screen-pop.png"))
    far_leg.accept()
    call.hears(far_leg)
    pop_is(browser, None, "talking")
    [rec] = outcomes.wait(phones.lib)
    assert rec["trigger"] == "api" and rec["result"] == "accepted"
    assert rec["matter"]["summary"] == summary and rec["initiating_agent"] == agent.username
    assert console_errors(browser) == []
    browser.close()

    # The caller left the 12345 agent with the blind transfer: its screen is free again.
    browser.switch_to.window(origin_tab)
    pop_is(browser, None, "idle")
    assert console_errors(browser) == []

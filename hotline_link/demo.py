"""``hotline-link demo``: a narrated scenario on the running lab (``make run``), for a newcomer
who has no phone: the lab's own softphones (the pjsua2 phones of the tests, ``tests/phones.py``)
register as the citizen and the agents and act as people would, while the wallboard and the
agent screens show it live.

1. A citizen calls 12345; the agent tags the matter (the desktop's ``PUT /calls/{id}/matter``)
   and presses ``*1``; a 110 agent answers with the matter on the INVITE.
2. A caller to 110 about a broken street light; the 110 agent presses ``*2``; a 12345 agent
   joins; three talk; the 12345 agent presses ``*7``: 12345 takes it.
3. A citizen reports a fight with a knife to 12345; the agent presses ``*3``: 110 is called in
   at once with an emergency alert; the 110 agent presses ``*7``.

Each step prints its ids, the outcome record and both tickets, read back from the sidecar's API;
the last line (``--json``: the only output) is the summary. Exit 1 when a step's record or
tickets do not appear. The lab's seats are taken over while it runs (a PBX keeps one
registration per seat): a phone of a newcomer's own on a seat rings again once it registers
again (at its next refresh).
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RING_TIMEOUT = 15.0
RECORD_TIMEOUT = 30.0


class DemoFailed(Exception):
    pass


@dataclass
class Step:
    title: str
    origin: str
    key: str
    matter: dict
    decide: str | None = None          # the far agent's decision key in a three-way call
    result: str = "accepted"
    outcome: dict = field(default_factory=dict)


STEPS = (
    Step("① 市民拨打 12345，坐席标注事项后按 *1 一键转 110 / a citizen calls 12345; the agent "
         "tags the matter and presses *1", "12345", "transfer",
         {"category": "road_traffic", "summary": "解放路与人民路路口红绿灯全灭，车辆堵成一团",
          "address": "解放路与人民路路口"}),
    Step("② 群众拨打 110 反映路灯损坏，坐席按 *2 三方通话，12345 坐席按 *7 受理 / a caller tells 110 of "
         "a broken street light; *2 brings 12345 in; its agent takes it with *7", "110",
         "three_way", {"category": "public_facilities", "summary": "小区门口路灯坏了一个星期",
                       "address": "和平里小区东门"}, decide="accept",
         result="accepted_by_target"),
    Step("③ 市民向 12345 报告有人持刀斗殴，坐席按 *3 紧急转 110，110 坐席按 *7 受理 / a knife fight "
         "reported to 12345: *3 calls 110 in at once; its agent takes it with *7", "12345",
         "emergency", {"category": "public_order", "summary": "小区门口有人持刀打架",
                       "address": "建设路88号", "emergency": True}, decide="accept",
         result="accepted_by_target"),
)


class Demo:
    def __init__(self, desc: dict, token: str, pace: float, quiet: bool, out=sys.stdout):
        sys.path.insert(0, str(ROOT / "tests"))
        from phones import Softphones            # the lab's softphones (tests/phones.py)

        self.desc = desc
        self.api_url = desc["services"]["sidecar"].rstrip("/")
        self.token = token
        self.pace = pace
        self.quiet = quiet
        self.out = out
        self.keys = {action: seq for seq, action in desc["keys"].items()}
        self.lib = Softphones(host=desc["phone_host"], log_level=0)
        accounts = desc["accounts"]
        # pjsua prints its start-up lines before any log setting applies: the phones' processes
        # get /dev/null for a standard output, the narration keeps this one.
        kept = os.dup(1)
        with open(os.devnull, "w") as null:
            sys.stdout.flush()
            os.dup2(null.fileno(), 1)
            try:
                self.citizens = {a["hotline"]: self.lib.phone(a) for a in accounts
                                 if a["role"] == "citizen"}
                self.agents = {hid: [self.lib.phone(a) for a in accounts
                                     if a["role"] == "agent" and a["hotline"] == hid]
                               for hid in desc["pbx"]}
            finally:
                os.dup2(kept, 1)
                os.close(kept)

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.out, flush=True)

    # --- the sidecar's API ------------------------------------------------------------------------
    def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(
            self.api_url + path, method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.token}",
                     **({"Content-Type": "application/json"} if body is not None else {})})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def connected_call(self, agent: str, since: float) -> str:
        """The id of the call ``agent`` was connected to since then: the desktop learns it from
        the live events (``agent_connected``), as an agent screen does."""
        host, _, port = self.api_url.removeprefix("http://").partition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=RING_TIMEOUT)
        try:
            conn.request("GET", f"/events?agent={agent}&types=agent_connected&since={since}",
                         headers={"Authorization": f"Bearer {self.token}"})
            resp = conn.getresponse()
            if resp.status != 200:
                raise DemoFailed(f"GET /events: HTTP {resp.status} {resp.read()[:200]!r}")
            for raw in resp:
                line = raw.decode().strip()
                if line.startswith("data: "):
                    return json.loads(line[6:])["call_id"]
        finally:
            conn.close()
        raise DemoFailed(f"no agent_connected event for {agent}")

    def record(self, tid: str) -> dict:
        """The outcome record with both tickets, once the sidecar has created them."""
        deadline = time.monotonic() + RECORD_TIMEOUT
        while time.monotonic() < deadline:
            status, body = self.api("GET", f"/transfers/{tid}")
            if status == 200 and len([t for t in body.get("tickets", {}).values() if t]) >= 2:
                return body
            self.lib.sleep(0.2)
        raise DemoFailed(f"transfer {tid}: no record with both tickets after {RECORD_TIMEOUT} s "
                         f"(last answer: HTTP {status})")

    # --- the phones ---------------------------------------------------------------------------
    def ringing(self, hotline: str):
        agents = self.agents[hotline]
        self.lib.wait_for(lambda: any(p.ringing_calls() for p in agents), RING_TIMEOUT,
                          f"a {hotline} agent's phone to ring")
        phone = next(p for p in agents if p.ringing_calls())
        return phone, phone.ringing_calls()[0]

    def pause(self) -> None:
        if self.pace:
            self.lib.sleep(self.pace)

    def run_step(self, step: Step) -> dict:
        other = next(h for h in self.desc["pbx"] if h != step.origin)
        self.say(f"\n{step.title}")
        since = time.time() - 1
        call = self.citizens[step.origin].dial(step.origin)
        agent, leg = self.ringing(step.origin)
        leg.accept()
        call.wait_confirmed()
        call_id = self.connected_call(agent.username, since)
        self.say(f"  {agent.username} 接听 answered · call {call_id}")
        self.pause()
        status, matter = self.api("PUT", f"/calls/{call_id}/matter",
                                  {"hotline": step.origin, "agent": agent.username,
                                   **step.matter})
        if status not in (200, 201):
            raise DemoFailed(f"tagging the matter: HTTP {status} {matter}")
        self.say(f"  事项 matter {matter['matter_id']}: {matter['category']} · "
                 f"{matter['summary']}")
        self.pause()
        key = self.keys[step.key]
        self.say(f"  {agent.username} 按键 presses {key}")
        leg.send_dtmf(key)
        far_agent, far_leg = self.ringing(other)
        tid = far_leg.header("X-Hotline-Transfer-Id")
        self.say(f"  {far_agent.username} 振铃 rings · transfer {tid} · category "
                 f"{far_leg.header('X-Hotline-Category')} · emergency "
                 f"{far_leg.header('X-Hotline-Emergency') or '0'}")
        far_leg.accept()
        far_leg.wait_confirmed()
        # The caller and the far agent talk before anyone decides or hangs up, as people would:
        # the far phone's answer is not yet the caller's bridge (a caller who hangs up in
        # between is recorded as abandoned, rightly), the tone each hears from the other is.
        call.hears_each_other(far_leg)
        self.say(f"  {far_agent.username} 接听 answered · 与市民通话 talks with the caller"
                 + (" · 三方通话 three parties talk" if step.decide else ""))
        self.pause()
        if step.decide:
            key = self.keys[step.decide]
            self.say(f"  {far_agent.username} 按键 presses {key}")
            far_leg.send_dtmf(key)
            leg.wait_ended(RING_TIMEOUT)
        else:
            leg.wait_ended(RING_TIMEOUT)
        self.pause()
        call.hang_up()
        call.wait_ended(RING_TIMEOUT)
        body = self.record(tid)
        rec = body["record"]
        if rec["result"] != step.result:
            raise DemoFailed(f"transfer {tid}: result {rec['result']}, expected {step.result}")
        self.say(f"  结果 outcome {rec['result']} · {rec['origin']} → {rec['target']} · "
                 + " · ".join(f"{p} 工单 ticket {t}" for p, t in sorted(body["tickets"].items())))
        return {"step": step.key, "transfer_id": tid, "call_id": call_id,
                "matter_id": matter["matter_id"], "result": rec["result"],
                "tickets": body["tickets"]}

    def run(self) -> dict:
        self.say("hotline-link 演示 demo: 看大屏 watch the wallboard at "
                 f"{self.api_url}/board and the agent screens at {self.api_url}/agent?agent=…")
        for phones in (list(self.citizens.values()), *self.agents.values()):
            for p in phones:
                self.lib.wait_for(lambda p=p: p.registered, 10, f"{p.username} to register")
        steps = [self.run_step(step) for step in STEPS]
        return {"demo": "ok", "steps": steps}

    def close(self) -> None:
        self.lib.close()


def main(desc: dict, token: str, pace: float, as_json: bool) -> int:
    demo = Demo(desc, token, pace, quiet=as_json)
    try:
        summary = demo.run()
    except (DemoFailed, AssertionError) as exc:      # the phones' timeouts are AssertionErrors
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        demo.close()
    print(json.dumps(summary, ensure_ascii=False))
    return 0

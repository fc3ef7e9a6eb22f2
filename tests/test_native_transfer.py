"""The lab's native blind transfer path, which the latency benchmark compares ours against.

A citizen dials ``native-<agent>`` (plain Dial with t/T, no application on the 12345 side); the
agent presses features.conf's blindxfer key and 110; Asterisk itself sends the caller over the
trunk, where the 110 application rings a 110 agent. If this path did not really end with the
caller talking to a 110 agent, the benchmark's native figures would mean nothing.
"""

from __future__ import annotations

import pytest

from test_delivery import CITIZEN_NUMBER

pytestmark = pytest.mark.lab


def test_native_blind_transfer_reaches_a_110_agent(phones, lab):
    agent = phones.agents["12345"][0]
    call = phones.citizen.dial(f"native-{agent.username}")
    leg = agent.wait_incoming(10)
    assert leg.caller_number() == CITIZEN_NUMBER
    leg.accept()
    call.wait_confirmed()
    leg.hears(call)
    call.hears(leg)
    # Not delivered by the application: no channel of this call is in the 12345 app.
    assert not lab.ari["12345"].request("GET", f"/applications/{lab.ari['12345'].app}")["channel_ids"]

    leg.send_dtmf("##110")
    leg.wait_ended(8)                                     # Asterisk releases the transferer
    far_agent, far_leg = phones.ringing_agent("110", timeout=10)
    assert far_agent in phones.agents["110"]
    far_leg.accept()
    far_leg.hears(call)
    call.hears(far_leg)
    assert not call.ended
    trunk = [c["name"] for c in lab.ari["12345"].channels() if "trunk-110" in c["name"]]
    assert trunk, "the native transfer did not cross the trunk"

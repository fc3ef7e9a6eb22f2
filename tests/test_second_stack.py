"""Agents on a second SIP stack: baresip (Debian's baresip-core) as the 12345 agent's phone.

The seat's pjsua2 phone is displaced for the test (one registration per seat, the newest wins)
and registers again afterwards. The other 12345 agent's pjsua2 phone turns calls down (486), so
every call of the test reaches the baresip phone, as fast as delivery goes to the next agent.
"""

from __future__ import annotations

import json
import time

import pytest

from audio import wav_has_tone
from baresip import Baresip
from test_transfer import KEY_TONE_HZ, channel_formats, check_record

pytestmark = pytest.mark.lab

# The baresip phone's microphone: a tone no pjsua2 phone plays and no DTMF row or column holds.
BARESIP_HZ = 2200
RTP_BASE = 24000


@pytest.fixture
def desk_phone(phones, lab, tmp_path):
    """A baresip phone on the seat of 12345's first agent; the other agent declines calls."""
    displaced, other = phones.agents["12345"]
    other.auto_answer = 486
    phone = Baresip(lab.account("agent", "12345"), tmp_path, BARESIP_HZ, RTP_BASE).start()
    try:
        yield phone
    finally:
        phone.stop()
        other.auto_answer = None
        displaced.reregister()


def _call_desk(phones, desk_phone: Baresip):
    """The citizen calls 12345 and the baresip phone answers: (its events before, the call)."""
    n = len(desk_phone.events)
    call = phones.citizen.dial("12345")
    desk_phone.wait_event("CALL_ESTABLISHED", 8, n)
    call.wait_confirmed()
    return n, call


def _warnings(service, since: int) -> list[str]:
    return [e["event"] for e in (json.loads(line) for line in
                                 service.log.read_bytes()[since:].splitlines()
                                 if line.startswith(b"{"))
            if e.get("level") in ("warning", "error")]


def test_a_baresip_agent_talks_and_its_star_1_transfers_without_a_key_tone(
        phones, outcomes, desk_phone, lab):
    n, call = _call_desk(phones, desk_phone)
    call.hears_tone(BARESIP_HZ)                    # the agent's voice reaches the caller
    formats = channel_formats(lab)                 # the baresip phone's leg in A-law too
    assert len(formats) == 2 and all(f == ("alaw",) * 3 for f in formats.values()), formats
    call.phone._send("tone", call.key, phones.citizen.tone_hz)   # and the caller's the agent
    phones.lib.sleep(1.0)
    call.phone._send("tone", call.key, 0)
    with call.listening(KEY_TONE_HZ) as heard:
        desk_phone.send_keys("*1")
        desk_phone.wait_event("CALL_CLOSED", 8, n)    # released as the transfer starts
        far_agent, far_leg = phones.ringing_agent("110", timeout=8)
        phones.lib.sleep(1.0)
    assert call.digits == "", "the caller's phone received the agent's keys"
    assert heard() == [], "the caller heard a key tone"
    far_leg.accept()
    call.hears(far_leg)
    far_leg.hears(call)
    # A-law on every leg of both PBXs, no translation (the baresip phone offered PCMA first, as
    # Chinese desk phones are set up).
    formats = channel_formats(lab)
    assert len(formats) == 4 and all(f == ("alaw",) * 3 for f in formats.values()), formats
    [rec] = outcomes.wait(phones.lib)
    check_record(rec, result="accepted", trigger="dtmf", origin="12345", target="110",
                 initiating_agent=desk_phone.username)
    # The caller's voice reached the baresip phone while they talked (its recording of the call).
    [received] = desk_phone.received()
    assert wav_has_tone(received, phones.citizen.tone_hz)


def test_a_baresip_agents_transfer_button_transfers_and_logs_no_warning(
        phones, outcomes, desk_phone, service):
    n, call = _call_desk(phones, desk_phone)
    log_from = service.log.stat().st_size
    desk_phone.transfer("110")
    desk_phone.wait_event("CALL_CLOSED", 8, n)
    far_agent, far_leg = phones.ringing_agent("110", timeout=8)
    far_leg.accept()
    call.hears(far_leg)
    [rec] = outcomes.wait(phones.lib)
    check_record(rec, result="accepted", trigger="refer", origin="12345", target="110",
                 initiating_agent=desk_phone.username)
    assert _warnings(service, log_from) == []


def test_a_baresip_agents_refused_transfer_gets_a_final_answer(phones, outcomes, desk_phone,
                                                               lab):
    n, call = _call_desk(phones, desk_phone)
    desk_phone.transfer("999")
    failed = desk_phone.wait_event("TRANSFER_FAILED", 5, n)
    assert "503" in json.dumps(failed), failed      # the final NOTIFY, at once
    # baresip 1.0 then hangs up by itself (its BYE follows the final NOTIFY, with no event of
    # its own; pjsua2 stays on the call, test_transfer.py). An agent's hang-up ends the call for
    # the caller too, as ever: nobody is left on a dead line, and nothing was dialled or recorded.
    call.wait_ended(5)
    assert not [c for c in lab.ari["12345"].channels() if "trunk" in c["name"]]
    assert outcomes.since_mark() == []


def test_a_baresip_phone_that_is_gone_is_skipped_within_the_qualify_interval(
        phones, desk_phone, service):
    from test_delivery import QUALIFY_WITHIN_S, seen_unavailable_after

    since = service.log.stat().st_size
    frozen_at = time.time()
    desk_phone.freeze()
    try:
        assert seen_unavailable_after(phones, service, desk_phone.username, since, frozen_at) \
            <= QUALIFY_WITHIN_S
        other = phones.agents["12345"][1]
        other.auto_answer = None
        call = phones.citizen.dial("12345")
        leg = other.wait_incoming(2)           # at once: the frozen phone is not rung first
        leg.accept()
        call.hears(leg)
    finally:
        desk_phone.thaw()

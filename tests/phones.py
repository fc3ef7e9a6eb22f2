"""Real SIP phones for the tests, on pjsua2.

One ``pjsua2.Endpoint`` per process (pjsua allows no more), no worker threads: the test thread
drives the SIP stack by calling ``pump()``, which every ``wait_for`` does. All signalling and RTP
stay on 127.0.0.1.

Three pjsua settings matter (see LAB.md): the media transport's bound/public address (else SDP
advertises the machine's interface), ``sndAutoCloseTime = -1`` (else the null sound device stops
the media clock after 1 s and queued DTMF is never sent), and ``maxCalls`` (default 4 per process).
"""

from __future__ import annotations

import gc
import re
import time
from typing import Callable

import pjsua2 as pj

HOST = "127.0.0.1"


class Timeout(AssertionError):
    pass


class Softphones:
    def __init__(self, host: str = HOST, log_level: int = 1):
        self.host = host
        self.ep = pj.Endpoint()
        self.ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.maxCalls = 64
        cfg.uaConfig.userAgent = "hotline-link-test-phone"
        cfg.medConfig.sndAutoCloseTime = -1
        cfg.medConfig.noVad = True
        cfg.logConfig.level = log_level
        cfg.logConfig.consoleLevel = log_level
        self.ep.libInit(cfg)
        tcfg = pj.TransportConfig()
        tcfg.boundAddress = host
        tcfg.publicAddress = host
        tcfg.port = 0
        self.ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
        self.ep.libStart()
        self.ep.audDevManager().setNullDev()
        self.phones: list[Phone] = []

    def pump(self, ms: int = 10) -> None:
        self.ep.libHandleEvents(ms)

    def wait_for(self, cond: Callable[[], object], timeout: float = 10.0, what: str = "") -> object:
        deadline = time.monotonic() + timeout
        while True:
            value = cond()
            if value:
                return value
            if time.monotonic() > deadline:
                raise Timeout(f"timed out after {timeout:.1f}s waiting for {what or cond}")
            self.pump(10)

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.pump(10)

    def phone(self, account: dict) -> "Phone":
        phone = Phone(self, account)
        self.phones.append(phone)
        self.wait_for(lambda: phone.registered, 10, f"{account['username']} to register")
        return phone

    def hang_up_all(self) -> None:
        for phone in self.phones:
            phone.hang_up_all()
        self.wait_for(lambda: all(not p.live_calls() for p in self.phones), 10,
                      "every test call to end")
        for phone in self.phones:
            phone.forget_ended()

    def close(self) -> None:
        for phone in self.phones:
            phone.hang_up_all()
        self.sleep(0.3)
        for phone in self.phones:
            phone.calls.clear()
        gc.collect()
        for phone in self.phones:
            phone.shutdown()
        self.phones.clear()
        gc.collect()
        self.ep.libDestroy()


class Phone(pj.Account):
    def __init__(self, lib: Softphones, account: dict):
        super().__init__()
        self.lib = lib
        self.account = account
        self.username = account["username"]
        registrar = account["registrar"]
        self.domain = registrar.removeprefix("sip:")
        self.registered = False
        self.reg_status = 0
        self.calls: list[PhoneCall] = []
        self.auto_answer: int | None = None   # answer incoming calls with this code, if set
        cfg = pj.AccountConfig()
        cfg.idUri = f"sip:{self.username}@{self.domain}"
        cfg.regConfig.registrarUri = registrar
        cfg.regConfig.timeoutSec = 300
        cfg.sipConfig.authCreds.append(
            pj.AuthCredInfo("digest", "*", self.username, 0, account["password"]))
        cfg.mediaConfig.transportConfig.boundAddress = lib.host
        cfg.mediaConfig.transportConfig.publicAddress = lib.host
        cfg.natConfig.sdpNatRewriteUse = 0
        cfg.natConfig.viaRewriteUse = 0
        cfg.natConfig.contactRewriteUse = 0
        self.create(cfg)

    def onRegState(self, prm: pj.OnRegStateParam) -> None:
        self.reg_status = prm.code
        self.registered = prm.code == 200 and prm.expiration > 0

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        call = PhoneCall(self, prm.callId, invite=prm.rdata.wholeMsg)
        self.calls.append(call)
        op = pj.CallOpParam()
        op.statusCode = self.auto_answer or 180
        call.answer(op)

    # --- placing and finding calls ----------------------------------------------------------
    def dial(self, number: str) -> "PhoneCall":
        call = PhoneCall(self)
        self.calls.append(call)
        call.makeCall(f"sip:{number}@{self.domain}", pj.CallOpParam(True))
        return call

    def live_calls(self) -> list["PhoneCall"]:
        return [c for c in self.calls if not c.ended]

    def incoming(self) -> list["PhoneCall"]:
        return [c for c in self.live_calls() if c.invite is not None]

    def wait_incoming(self, timeout: float = 10.0) -> "PhoneCall":
        self.lib.wait_for(lambda: self.ringing_calls(), timeout, f"a call to ring {self.username}")
        return self.ringing_calls()[0]

    def ringing_calls(self) -> list["PhoneCall"]:
        return [c for c in self.incoming() if c.state in (pj.PJSIP_INV_STATE_INCOMING,
                                                          pj.PJSIP_INV_STATE_EARLY)]

    def hang_up_all(self) -> None:
        for call in self.live_calls():
            call.hang_up()

    def forget_ended(self) -> None:
        self.calls = [c for c in self.calls if not c.ended]


class PhoneCall(pj.Call):
    def __init__(self, phone: Phone, call_id: int = pj.PJSUA_INVALID_ID, invite: str | None = None):
        super().__init__(phone, call_id)
        self.phone = phone
        self.invite = invite
        self.state = pj.PJSIP_INV_STATE_NULL
        self.status_code = 0
        self.remote_uri = ""
        self.digits = ""
        self.ended = False
        self.states: list[int] = []
        self.transfer_status: list[int] = []

    # --- callbacks ---------------------------------------------------------------------------
    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        info = self.getInfo()
        self.state = info.state
        self.states.append(info.state)
        self.status_code = info.lastStatusCode
        self.remote_uri = info.remoteUri
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.ended = True

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:
        self.digits += prm.digit

    def onCallTransferStatus(self, prm: pj.OnCallTransferStatusParam) -> None:
        self.transfer_status.append(prm.statusCode)

    # --- actions -----------------------------------------------------------------------------
    @property
    def confirmed(self) -> bool:
        return self.state == pj.PJSIP_INV_STATE_CONFIRMED and not self.ended

    def accept(self) -> None:
        op = pj.CallOpParam()
        op.statusCode = 200
        self.answer(op)

    def reject(self, code: int = 486) -> None:
        op = pj.CallOpParam()
        op.statusCode = code
        self.hangup(op)

    def hang_up(self) -> None:
        if self.ended:
            return
        try:
            self.hangup(pj.CallOpParam())
        except pj.Error:
            pass   # already disconnecting

    def send_dtmf(self, digits: str) -> None:
        self.dialDtmf(digits)

    def transfer_to(self, number: str) -> None:
        self.xfer(f"sip:{number}@{self.phone.domain}", pj.CallOpParam(True))

    def wait_confirmed(self, timeout: float = 10.0) -> "PhoneCall":
        self.phone.lib.wait_for(lambda: self.confirmed or self.ended, timeout,
                                f"{self.phone.username}'s call to connect")
        if not self.confirmed:
            raise AssertionError(f"{self.phone.username}'s call ended with {self.status_code}")
        return self

    def wait_ended(self, timeout: float = 10.0) -> "PhoneCall":
        self.phone.lib.wait_for(lambda: self.ended, timeout, f"{self.phone.username}'s call to end")
        return self

    def header(self, name: str) -> str | None:
        """A header of the INVITE that rang this phone."""
        if self.invite is None:
            return None
        match = re.search(rf"^{re.escape(name)}:\s*(.*?)\r?$", self.invite, re.I | re.M)
        return match.group(1) if match else None

    def caller_number(self) -> str:
        """The user part of the From header (what a phone shows as caller ID)."""
        source = self.header("From") or self.remote_uri
        match = re.search(r"sip:([^@;>]+)@", source)
        return match.group(1) if match else ""

    def hears(self, other: "PhoneCall", digits: str = "159#", timeout: float = 8.0) -> None:
        """Prove the media path: digits sent by ``other`` reach this call, every one in order.

        Digits through an Asterisk bridge may arrive duplicated, so check order, not equality.
        """
        start = len(self.digits)
        other.send_dtmf(digits)

        def arrived() -> bool:
            got = self.digits[start:]
            pos = 0
            for d in got:
                if pos < len(digits) and d == digits[pos]:
                    pos += 1
            return pos == len(digits)

        self.phone.lib.wait_for(arrived, timeout,
                                f"{self.phone.username} to hear {digits!r} from {other.phone.username}"
                                f" (heard {self.digits[start:]!r})")

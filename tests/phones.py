"""Real SIP phones for the tests, on pjsua2, one process per phone.

Why a process per phone: pjsua allows one ``Endpoint`` per process, and the ``pjsua2-python``
wheel is built with ``PJSUA_MAX_CALLS = 4`` (``uaConfig.maxCalls`` cannot exceed it), which a
single process holding every phone of a three-way call test would exhaust. So each phone is a
worker process with its own Endpoint and one account, driven from the test process over a pipe:
commands go down, state changes (call state, DTMF digits, the INVITE that rang it) come up.

Inside a worker there are no pjsua threads: it alternates ``libHandleEvents`` with reading
commands. All signalling and RTP stay on 127.0.0.1. Three pjsua settings matter (see LAB.md):
the media transport's bound/public address (else SDP advertises the machine's interface),
``sndAutoCloseTime = -1`` (else the null sound device stops the media clock after 1 s and
queued DTMF is never sent), and ending the worker with ``os._exit`` (a Call object destroyed
after ``libDestroy`` makes pjsua assert).
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import re
import signal
import time
from array import array
from contextlib import contextmanager
from multiprocessing.connection import Connection, wait
from typing import Callable, Iterator

from audio import SHARE, SPEECH, TONES_HZ, is_speech, tone_share

HOST = "127.0.0.1"

# pjsip_inv_state values, so the test process need not load pjsua.
NULL, CALLING, INCOMING, EARLY, CONNECTING, CONFIRMED, DISCONNECTED = range(7)
# pjsip's status for "INVITE session already terminated" (PJSIP_ERRNO_START_PJSIP + 140).
PJSIP_ESESSIONTERMINATED = 171140


class Timeout(AssertionError):
    pass


class PhoneDied(AssertionError):
    """A phone's worker process ended during a test (its stack, if it crashed, is in the
    test's captured stderr). The fixtures start it again for the next test."""


# --- the worker (runs in the phone's own process) -------------------------------------------------

def _worker(conn: Connection, account: dict, host: str, log_level: int) -> None:
    import ctypes
    import faulthandler

    faulthandler.enable()                               # a crash leaves its stack in the test log

    ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG: die with the tests
    import pjsua2 as pj

    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.uaConfig.maxCalls = 4
    cfg.uaConfig.userAgent = f"hotline-link-test-phone {account['username']}"
    cfg.medConfig.sndAutoCloseTime = -1
    cfg.medConfig.noVad = True
    cfg.logConfig.level = log_level
    cfg.logConfig.consoleLevel = log_level
    ep.libInit(cfg)
    tcfg = pj.TransportConfig()
    tcfg.boundAddress = host
    tcfg.publicAddress = host
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()
    default_codecs = {c.codecId: c.priority for c in ep.codecEnum2()}

    domain = account["registrar"].removeprefix("sip:")
    calls: dict[str, pj.Call] = {}
    # Every Call object this phone made, kept until the worker ends (os._exit: no destructor
    # runs). pjsua2's ~Call detaches and hangs up whatever call holds its slot *now*; a stale
    # reference dropped after the slot was reused (four calls later: PJSUA_MAX_CALLS) killed a
    # ringing call that then never reported DISCONNECTED (CI: PJSIP_ESESSIONTERMINATED on
    # answer, and every later teardown waited for that call in vain).
    made: list[pj.Call] = []
    rate = cfg.medConfig.clockRate
    frame_samples = rate * cfg.medConfig.audioFramePtime // 1000
    auto_answer = {"code": None}
    counter = itertools.count(1)
    port_ids = itertools.count(1)

    def send(*msg) -> None:
        conn.send(msg)

    class ToneDetector(pj.AudioMediaPort):
        """Counts received frames that carry ``hz``; the main loop reports the first run.
        onFrameReceived runs on the media clock's thread, so it only counts. Idle while
        ``hz`` is 0."""

        def __init__(self):
            super().__init__()
            self.hz, self.run, self.heard, self.reported = 0, 0, False, False
            self.onset = 0.0
            fmt = pj.MediaFormatAudio()
            fmt.type, fmt.clockRate, fmt.channelCount = pj.PJMEDIA_TYPE_AUDIO, rate, 1
            fmt.bitsPerSample, fmt.frameTimeUsec = 16, frame_samples * 1_000_000 // rate
            self.createPort(f"detect-{next(port_ids)}", fmt)

        def arm(self, hz: int) -> None:
            self.run, self.heard, self.reported = 0, False, False
            self.hz = hz

        def onFrameReceived(self, frame) -> None:
            hz = self.hz
            if not hz or self.heard or frame.type != pj.PJMEDIA_FRAME_TYPE_AUDIO:
                return
            samples = array("h", bytes(frame.buf))
            if self.run == 0:
                # Where a run that proves to be the sound began (the benchmarks time it).
                self.onset = time.monotonic()
            if hz == SPEECH:
                # Speech: loud, and not the ringing tone (nor silence, which has no share).
                hit = is_speech(samples, rate)
                self.run = self.run + 1 if hit else 0
                self.heard = self.run >= 10           # 200 ms of it: a word, not a click
                return
            self.run = self.run + 1 if tone_share(samples, rate, hz) >= SHARE else 0
            self.heard = self.run >= 5                # 100 ms of the tone, not a click

    class Ports:
        """Tone generators and detectors, reused and never destroyed while the phone lives.
        Destroying a port the conference bridge is still clocking (the bridge removes ports
        asynchronously, on its media thread) was seen to crash the phone at a later call's
        answer(); a reused port is only disconnected and muted."""

        def __init__(self) -> None:
            self.tones: list[pj.ToneGenerator] = []
            self.detectors: list[ToneDetector] = []

        def tone(self, hz: int) -> pj.ToneGenerator:
            if self.tones:
                tone = self.tones.pop()
            else:
                tone = pj.ToneGenerator()
                tone.createToneGenerator(rate, 1)
            desc = pj.ToneDesc()
            desc.freq1, desc.freq2, desc.on_msec, desc.off_msec = hz, hz, 1000, 0
            tones = pj.ToneDescVector()
            tones.append(desc)
            tone.play(tones, True)
            return tone

        def detector(self, hz: int) -> ToneDetector:
            detector = self.detectors.pop() if self.detectors else ToneDetector()
            detector.arm(hz)
            return detector

        def give_back(self, audio, tone=None, detector=None) -> None:
            if tone is not None:
                tone.stop()
                if audio is not None:
                    try:
                        tone.stopTransmit(audio)
                    except pj.Error:
                        pass                          # the call's stream is already gone
                self.tones.append(tone)
            if detector is not None:
                detector.hz = 0
                if audio is not None:
                    try:
                        audio.stopTransmit(detector)
                    except pj.Error:
                        pass
                self.detectors.append(detector)

    ports = Ports()

    class WCall(pj.Call):
        def __init__(self, acc, key: str, call_id: int = pj.PJSUA_INVALID_ID):
            super().__init__(acc, call_id)
            self.key = key
            self.audio = None
            self.tone: pj.ToneGenerator | None = None
            self.detector: ToneDetector | None = None

        def connect_media(self) -> None:
            """(Re)attach this call's tone and detector to its current audio stream."""
            if self.audio is None:
                return
            if self.tone is not None:
                self.tone.startTransmit(self.audio)
            if self.detector is not None:
                self.audio.startTransmit(self.detector)

        def play(self, hz: int) -> None:
            ports.give_back(self.audio, tone=self.tone)
            self.tone = ports.tone(hz) if hz else None
            self.connect_media()

        def listen(self, hz: int) -> None:
            ports.give_back(self.audio, detector=self.detector)
            self.detector = ports.detector(hz) if hz else None
            self.connect_media()

        def release_ports(self) -> None:
            ports.give_back(self.audio, tone=self.tone, detector=self.detector)
            self.tone = self.detector = None

        def onCallState(self, prm) -> None:
            info = self.getInfo()
            send("state", self.key, info.state, info.lastStatusCode, info.remoteUri)
            if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
                # Out of ``calls`` first: a key left there would act on the next call of its slot.
                calls.pop(self.key, None)
                self.release_ports()

        def onCallMediaState(self, prm) -> None:
            # Connect the call's audio to the null sound device both ways: the conference
            # clock then drives the stream, and RFC 4733 digits queued by dialDtmf keep going
            # out (unconnected, a stream's DTMF was seen to stall after the first digit).
            info = self.getInfo()
            for i, media in enumerate(info.media):
                if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                    audio = self.getAudioMedia(i)
                    manager = ep.audDevManager()
                    manager.getCaptureDevMedia().startTransmit(audio)
                    audio.startTransmit(manager.getPlaybackDevMedia())
                    self.audio = audio
                    self.connect_media()

        def onDtmfDigit(self, prm) -> None:
            # CLOCK_MONOTONIC is system-wide: the benchmarks compare these stamps across phones.
            send("dtmf", self.key, prm.digit, time.monotonic())

        def onCallTransferStatus(self, prm) -> None:
            send("xfer", self.key, prm.statusCode, prm.finalNotify)
            # Like a desk phone after its own blind transfer: a final 2xx ends our part.
            if prm.finalNotify and 200 <= prm.statusCode < 300:
                prm.cont = False
                hang_up(self)

    class WAccount(pj.Account):
        def onRegState(self, prm) -> None:
            send("reg", prm.code, prm.expiration)

        def onIncomingCall(self, prm) -> None:
            rang_at = time.monotonic()
            key = f"w{next(counter)}"
            call = WCall(self, key, prm.callId)
            calls[key] = call
            made.append(call)
            code = auto_answer["code"] or 180
            # With the code: a call refused at once is over, not ringing, for the test side.
            send("incoming", key, prm.rdata.wholeMsg, rang_at, code)
            op = pj.CallOpParam()
            op.statusCode = code
            call.answer(op)

    acc = WAccount()
    acfg = pj.AccountConfig()
    acfg.idUri = f"sip:{account['username']}@{domain}"
    acfg.regConfig.registrarUri = account["registrar"]
    acfg.regConfig.timeoutSec = 300
    acfg.sipConfig.authCreds.append(
        pj.AuthCredInfo("digest", "*", account["username"], 0, account["password"]))
    acfg.mediaConfig.transportConfig.boundAddress = host
    acfg.mediaConfig.transportConfig.publicAddress = host
    acfg.natConfig.sdpNatRewriteUse = 0
    acfg.natConfig.viaRewriteUse = 0
    acfg.natConfig.contactRewriteUse = 0
    acc.create(acfg)

    def op_with(code: int | None = None):
        op = pj.CallOpParam(True)
        if code is not None:
            op.statusCode = code
        return op

    def hang_up(call: pj.Call, code: int | None = None) -> None:
        # pjsua 2.15.1's media clock thread can send RTP on the stream whose UDP transport the
        # hangup is destroying, and the phone aborts in pj_ioqueue_sendto (pjproject PR 5016,
        # not in the wheel; seen once in CI). The clock is stopped while the call is torn down:
        # the phone's other calls miss a frame or two.
        manager = ep.audDevManager()
        manager.setNoDev()
        try:
            call.hangup(op_with(code))
        finally:
            manager.setNullDev()

    def do(cmd: str, key: str | None, *args) -> None:
        if cmd == "dial":
            call = WCall(acc, key)
            calls[key] = call
            made.append(call)
            call.makeCall(f"sip:{args[0]}@{domain}", op_with())
            return
        if cmd == "auto_answer":
            auto_answer["code"] = args[0]
            send("applied", None, args[1])
            return
        if cmd == "register":
            acc.setRegistration(True)
            return
        if cmd == "codecs":
            # Offer only these (by name, in this order); none given: the defaults again.
            order = list(args[0])
            for cid, prio in default_codecs.items():
                name = cid.split("/")[0]
                ep.codecSetPriority(cid, (255 - order.index(name)) if name in order
                                    else 0 if order else prio)
            return
        call = calls.get(key)
        if call is None:
            raise RuntimeError(f"no live call {key}")
        try:
            do_call(cmd, key, call, *args)
        except pj.Error as exc:
            if exc.status == PJSIP_ESESSIONTERMINATED:
                # Over for pjsua, though this Call object was never told (see ``made``): it is
                # over for the tests too, or every later teardown waits for it in vain.
                ended(call)
            raise

    def ended(call: WCall) -> None:
        if calls.pop(call.key, None) is None:
            return
        call.release_ports()
        try:
            info = call.getInfo()
            code, remote = info.lastStatusCode, info.remoteUri
        except pj.Error:
            code, remote = 0, ""
        send("state", call.key, pj.PJSIP_INV_STATE_DISCONNECTED, code, remote)

    def do_call(cmd: str, key: str, call: WCall, *args) -> None:
        if cmd == "accept":
            call.answer(op_with(200))
            send("done", key, cmd, time.monotonic())
        elif cmd == "reject":
            hang_up(call, args[0])
        elif cmd == "hangup":
            hang_up(call)
        elif cmd == "dtmf":
            call.dialDtmf(args[0])
            send("done", key, cmd, time.monotonic())
        elif cmd == "dtmf_short":
            # A short RFC 4733 digit (ms), for probes that repeat a digit quickly.
            prm = pj.CallSendDtmfParam()
            prm.method = pj.PJSUA_DTMF_METHOD_RFC2833
            prm.digits, prm.duration = args[0], args[1]
            call.sendDtmf(prm)
            send("done", key, cmd, time.monotonic())
        elif cmd == "xfer":
            call.xfer(f"sip:{args[0]}@{domain}", op_with())
        elif cmd == "tone":
            call.play(args[0])
            send("done", key, cmd, time.monotonic())
        elif cmd == "listen":
            call.listen(args[0])

    while True:
        ep.libHandleEvents(5)
        for call in list(calls.values()):
            detector = call.detector
            if detector is not None and detector.heard and not detector.reported:
                send("heard", call.key, detector.hz, detector.onset)
                detector.reported = True
        while conn.poll():
            try:
                msg = conn.recv()
            except EOFError:
                os._exit(0)
            if msg[0] == "quit":
                for call in list(calls.values()):
                    try:
                        hang_up(call)
                    except pj.Error:
                        pass
                deadline = time.monotonic() + 0.5
                while time.monotonic() < deadline:
                    ep.libHandleEvents(10)
                conn.send(("bye",))
                os._exit(0)
            try:
                do(*msg)
            except (pj.Error, RuntimeError) as exc:
                reason = exc.info() if isinstance(exc, pj.Error) else str(exc)
                send("error", msg[1], f"{msg[0]}: {reason}")


# --- the test side ---------------------------------------------------------------------------------

class Softphones:
    """All phones of a test session; ``pump()`` collects what every phone reported."""

    def __init__(self, host: str = HOST, log_level: int = 1):
        self.host = host
        self.log_level = log_level
        self.ctx = mp.get_context("fork")
        self.phones: list[Phone] = []

    def spawn(self, account: dict):
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=_worker, args=(child, account, self.host, self.log_level),
                                name=f"phone-{account['username']}", daemon=True)
        proc.start()
        child.close()
        return parent, proc

    def phone(self, account: dict) -> "Phone":
        phone = Phone(self, account, *self.spawn(account))
        self.phones.append(phone)
        self.wait_for(lambda: phone.registered, 10, f"{account['username']} to register")
        return phone

    def pump(self, ms: int = 10) -> None:
        conns = {p.conn: p for p in self.phones if not p.dead}
        if not conns:
            time.sleep(ms / 1000)
            return
        died = []
        for conn in wait(list(conns), timeout=ms / 1000):
            phone = conns[conn]
            try:
                while conn.poll():
                    phone._on(conn.recv())
            except (EOFError, OSError):
                phone._died()
                died.append(phone)
        if died:
            raise PhoneDied(", ".join(p.death() for p in died))

    def dead(self) -> list["Phone"]:
        return [p for p in self.phones if p.dead or not p.proc.is_alive()]

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

    def hang_up_all(self) -> None:
        for phone in self.phones:
            if not phone.dead:
                phone.hang_up_all()
        self.wait_for(lambda: all(not p.live_calls() for p in self.phones), 10,
                      "every test call to end")
        for phone in self.phones:
            phone.forget_ended()

    def close(self) -> None:
        for phone in self.phones:
            phone.quit()
        for phone in self.phones:
            phone.proc.join(3)
            if phone.proc.is_alive():
                phone.proc.kill()
        self.phones.clear()


class Phone:
    def __init__(self, lib: Softphones, account: dict, conn: Connection, proc):
        self.lib = lib
        self.account = account
        self.username = account["username"]
        self.domain = account["registrar"].removeprefix("sip:")
        self.conn = conn
        self.proc = proc
        self.dead = False
        self.registered = False
        self.reg_status = 0
        self.calls: list[PhoneCall] = []
        self.by_key: dict[str, PhoneCall] = {}
        self.errors: list[str] = []
        self._auto_answer: int | None = None
        self._asked = self._applied = 0             # auto-answer changes sent, and applied
        self._keys = itertools.count(1)
        # The tone this phone plays when another party checks that it hears this one.
        self.tone_hz = TONES_HZ[len(lib.phones) % len(TONES_HZ)]

    def __repr__(self) -> str:
        return f"<Phone {self.username}>"

    def _send(self, *msg) -> None:
        if self.dead:
            raise PhoneDied(self.death())
        try:
            self.conn.send(msg)
        except OSError:                               # BrokenPipeError: the worker is gone
            self._died()
            raise PhoneDied(self.death()) from None

    def _died(self) -> None:
        self.dead = True
        self.registered = False
        for call in self.live_calls():
            call.ended, call.status_code = True, -1
        self.proc.join(1)

    def death(self) -> str:
        code = self.proc.exitcode
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return f"{self.username}'s phone process died ({how})"

    def stop(self) -> None:
        """End the worker now, leaving its seat to another registration (the demo's phones);
        ``restart`` brings it back."""
        self.proc.kill()
        self._died()

    def restart(self, timeout: float = 10.0) -> None:
        """A new worker for this phone (same account, same object the tests hold)."""
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(3)
        self.conn.close()
        self.conn, self.proc = self.lib.spawn(self.account)
        self.dead = False
        self.registered = False
        self.calls, self.by_key = [], {}
        self._auto_answer = None
        self._asked = self._applied = 0
        self.lib.wait_for(lambda: self.registered, timeout, f"{self.username} to register")

    def _on(self, msg: tuple) -> None:
        kind = msg[0]
        if kind == "reg":
            self.reg_status = msg[1]
            self.registered = msg[1] == 200 and msg[2] > 0
        elif kind == "incoming":
            call = PhoneCall(self, msg[1], invite=msg[2])
            call.rang_at = msg[3]
            if msg[4] >= 300:
                call.ended, call.status_code = True, msg[4]
            self.calls.append(call)
            self.by_key[call.key] = call
        elif kind == "applied":
            self._applied = msg[2]
        elif kind == "done":
            call = self.by_key.get(msg[1])
            if call is not None:
                call.done_at.append((msg[2], msg[3]))
        elif kind == "error":
            self.errors.append(msg[2])
            call = self.by_key.get(msg[1])
            if call is not None and msg[2].startswith("dial"):
                call.ended, call.status_code = True, -1
        elif kind in ("state", "dtmf", "xfer", "heard"):
            call = self.by_key.get(msg[1])
            if call is not None:
                call._on(kind, *msg[2:])

    @property
    def auto_answer(self) -> int | None:
        return self._auto_answer

    @auto_answer.setter
    def auto_answer(self, code: int | None) -> None:
        # Applied before the setter returns: an INVITE right after must meet the new answer
        # (a call refused by the old one looked like a ringing call to the test).
        self._auto_answer = code
        self._asked += 1
        asked = self._asked
        self._send("auto_answer", None, code, asked)
        self.lib.wait_for(lambda: self._applied >= asked, 5,
                          f"{self.username} to answer calls with {code or 'ringing'}")

    def reregister(self, timeout: float = 10.0) -> None:
        """Register again now (a restarted PBX may have lost the registration)."""
        self.registered = False
        self._send("register", None)
        self.lib.wait_for(lambda: self.registered, timeout, f"{self.username} to register again")

    def offer_codecs(self, *names: str) -> None:
        """Offer only these codecs in new calls, in this order ("PCMA", "PCMU"); no names: the
        phone's defaults again."""
        self._send("codecs", None, names)

    def dial(self, number: str) -> "PhoneCall":
        call = PhoneCall(self, f"p{next(self._keys)}")
        self.calls.append(call)
        self.by_key[call.key] = call
        self._send("dial", call.key, number)
        return call

    def live_calls(self) -> list["PhoneCall"]:
        return [c for c in self.calls if not c.ended]

    def incoming(self) -> list["PhoneCall"]:
        return [c for c in self.live_calls() if c.invite is not None]

    def ringing_calls(self) -> list["PhoneCall"]:
        return [c for c in self.incoming() if c.state in (NULL, INCOMING, EARLY)]

    def wait_incoming(self, timeout: float = 10.0) -> "PhoneCall":
        self.lib.wait_for(self.ringing_calls, timeout, f"a call to ring {self.username}")
        return self.ringing_calls()[0]

    def hang_up_all(self) -> None:
        for call in self.live_calls():
            call.hang_up()

    def forget_ended(self) -> None:
        self.calls = [c for c in self.calls if not c.ended]
        self.by_key = {c.key: c for c in self.calls}

    def quit(self) -> None:
        try:
            self._send("quit")
        except (PhoneDied, OSError):
            pass


class PhoneCall:
    def __init__(self, phone: Phone, key: str, invite: str | None = None):
        self.phone = phone
        self.key = key
        self.invite = invite
        self.state = NULL
        self.states: list[int] = []
        self.status_code = 0
        self.remote_uri = ""
        self.digits = ""
        self.ended = False
        self.transfer_status: list[int] = []
        self.transfer_final: int | None = None     # the status of the NOTIFY that ended a REFER
        # (Hz, when its first frame arrived), from the phone
        self.tones_heard: list[tuple[int, float]] = []
        # time.monotonic() stamps taken inside the phone's process, for the benchmarks: when
        # the INVITE arrived, each DTMF digit received, each command carried out.
        self.rang_at: float | None = None
        self.dtmf_at: list[tuple[str, float]] = []
        self.done_at: list[tuple[str, float]] = []

    def __repr__(self) -> str:
        return f"<Call {self.phone.username}/{self.key} state={self.state}>"

    def _on(self, kind: str, *args) -> None:
        if kind == "state":
            self.state, self.status_code, self.remote_uri = args
            self.states.append(self.state)
            if self.state == DISCONNECTED:
                self.ended = True
        elif kind == "dtmf":
            self.digits += args[0]
            self.dtmf_at.append((args[0], args[1]))
        elif kind == "xfer":
            self.transfer_status.append(args[0])
            if args[1]:
                self.transfer_final = args[0]
        elif kind == "heard":
            self.tones_heard.append((args[0], args[1]))

    # --- actions -----------------------------------------------------------------------------
    @property
    def confirmed(self) -> bool:
        return self.state == CONFIRMED and not self.ended

    def accept(self) -> None:
        self.phone._send("accept", self.key)

    def reject(self, code: int = 486) -> None:
        self.phone._send("reject", self.key, code)

    def hang_up(self) -> None:
        if not self.ended:
            self.phone._send("hangup", self.key)

    def send_dtmf(self, digits: str) -> None:
        self.phone._send("dtmf", self.key, digits)

    def send_short_dtmf(self, digit: str, duration_ms: int = 40) -> None:
        self.phone._send("dtmf_short", self.key, digit, duration_ms)

    def transfer_to(self, number: str) -> None:
        self.phone._send("xfer", self.key, number)

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

    @contextmanager
    def listening(self, hz: int) -> Iterator[Callable[[], list[int]]]:
        """While inside, this phone listens for ``hz`` (or SPEECH) in the audio it receives;
        yields a function that says what it heard since (each frequency once per run)."""
        heard = len(self.tones_heard)
        self.phone._send("listen", self.key, hz)
        try:
            yield lambda: [f for f, _ in self.tones_heard[heard:]]
        finally:
            self.phone._send("listen", self.key, 0)

    def hears_tone(self, hz: int, timeout: float = 8.0, source: str = "") -> None:
        """This call receives ``hz`` (100 ms of it; SPEECH: 200 ms of loud audio in no tone)."""
        with self.listening(hz) as heard:
            self.phone.lib.wait_for(lambda: hz in heard(), timeout,
                                    f"{self.phone.username} to hear {source or f'{hz} Hz'}")

    def hears(self, other: "PhoneCall", timeout: float = 8.0) -> None:
        """Prove the media path from ``other`` to this call: ``other``'s phone plays its tone
        into its call, and this phone must detect that frequency in the audio it receives
        (100 ms of it). One direction only: check the way back with ``other.hears(self)``."""
        hz = other.phone.tone_hz
        with self.listening(hz) as heard:
            other.phone._send("tone", other.key, hz)
            try:
                self.phone.lib.wait_for(
                    lambda: hz in heard(), timeout,
                    f"{self.phone.username} to hear {other.phone.username}'s {hz} Hz tone")
            finally:
                other.phone._send("tone", other.key, 0)

    def hears_speech(self, timeout: float = 8.0) -> None:
        """This call receives speech (a spoken prompt): 200 ms of loud audio in no tone."""
        self.hears_tone(SPEECH, timeout, "speech")

    def hears_echo(self, timeout: float = 8.0) -> None:
        """Prove the media path to a far end that sends back what it hears (the lab's
        responders, Echo()): this phone's own tone must come back."""
        self.hears(self, timeout)

    def hears_each_other(self, other: "PhoneCall", timeout: float = 8.0) -> None:
        self.hears(other, timeout)
        other.hears(self, timeout)

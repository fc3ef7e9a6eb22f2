"""The service's ARI client against the lab's real Asterisk: REST requests over the event
WebSocket once Asterisk has answered over it, over HTTP otherwise, with the same answers and the
same errors either way, and back on HTTP the moment the WebSocket goes."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from ari_app.client import TRANSPORT_EVENTS, AriClient, AriNotFound

pytestmark = pytest.mark.lab


def client(lab, **kw) -> AriClient:
    ari = lab.descriptor["pbx"]["12345"]["ari"]
    password = Path(ari["password_file"]).read_text().strip()
    # Its own application name: the service's app (if running) keeps its own WebSocket.
    return AriClient(ari["url"], ari["username"], password, f"client-test-{uuid.uuid4().hex[:6]}",
                     **kw)


def reading(ari: AriClient) -> asyncio.Task:
    """Read events in the background, as the app does (REST answers come in on that loop)."""
    async def drain():
        async for _ in ari.events():
            pass
    return asyncio.create_task(drain())


async def using(ari: AriClient, transport: str) -> None:
    async with asyncio.timeout(5):
        while not (ari.connected and ari.transport == transport):
            await asyncio.sleep(0.02)


async def round_trip(ari: AriClient) -> None:
    """What the app does most: create, read, change, delete, and a request that fails."""
    name = f"ws-probe-{uuid.uuid4().hex[:6]}"
    bridge = await ari.post("/bridges", type="mixing", name=name)
    try:
        got = await ari.get(f"/bridges/{bridge['id']}")
        assert got["name"] == name and got["bridge_type"] == "mixing"
        # A JSON body travels too (message_body over the WebSocket).
        await ari.post("/asterisk/variable", {"variable": "HL_PROBE", "value": name})
        assert (await ari.get("/asterisk/variable", variable="HL_PROBE"))["value"] == name
        with pytest.raises(AriNotFound, match="Channel not found"):
            await ari.get("/channels/no-such-channel")
    finally:
        await ari.delete(f"/bridges/{bridge['id']}")
    # Asterisk destroys a bridge after answering the DELETE: gone within moments, not at once.
    async with asyncio.timeout(3):
        while True:
            try:
                await ari.get(f"/bridges/{bridge['id']}")
            except AriNotFound:
                break
            await asyncio.sleep(0.05)


def test_requests_go_over_the_websocket_once_asterisk_answers_there(lab):
    async def main():
        async with client(lab) as ari:
            reader = reading(ari)
            await using(ari, "websocket")
            sent = []
            real = ari._session.request

            def counting(*args, **kw):               # any HTTP request would pass here
                sent.append(args)
                return real(*args, **kw)
            ari._session.request = counting
            await round_trip(ari)
            # An app that filters its events (as ours does) still gets the answers.
            await ari.put(f"/applications/{ari.app}/eventFilter",
                          {"allowed": [{"type": t} for t in ("StasisStart", *TRANSPORT_EVENTS)]})
            await round_trip(ari)
            assert sent == []
            reader.cancel()
    asyncio.run(main())


def test_http_when_switched_off_and_while_the_websocket_is_down(lab):
    async def main():
        async with client(lab, rest_over_ws=False) as ari:
            reader = reading(ari)
            await using(ari, "http")
            await asyncio.sleep(2.5)                 # no probe: it stays on HTTP
            assert ari.transport == "http"
            await round_trip(ari)
            reader.cancel()
        async with client(lab) as ari:
            reader = reading(ari)
            await using(ari, "websocket")
            await ari._ws.close()                    # the WebSocket goes; requests do not fail
            await round_trip(ari)
            await using(ari, "websocket")            # and come back once it is up again
            reader.cancel()
    asyncio.run(main())

"""Webhook signatures: how a subscriber knows an alert really comes from the sidecar.

Every webhook POST carries an ``X-Hotline-Signature`` header. For the body ``{"type":"ping"}``
sent at 1718000000 with the secret ``example-secret`` its value is (a test vector for your own
implementation)::

    t=1718000000,v1=d838bdfc5b3f8a49e5e092afd9b07b4e33cb9a6e634adf6e1dde6e1a1eb2a52d

* ``t`` is the send time in Unix seconds;
* ``v1`` is the lowercase hex HMAC-SHA256, keyed with the subscriber's shared secret, of the bytes
  ``b"<t>." + body`` -- the decimal timestamp, a dot, then the raw request body exactly as
  received (verify before parsing the JSON: re-serialising changes the bytes).

Signing the timestamp together with the body confines replays of a captured request to a short
window: reject requests whose ``t`` is more than 5 minutes (the default tolerance) from your
clock, in either direction. While a secret is being rotated the header carries one ``v1`` entry
per active secret (``t=...,v1=<old>,v1=<new>``): accept the request if any of them matches.
Entries with other names are reserved for future schemes; ignore them. Compare in constant time.

A complete check in Python (it raises on a malformed header: treat that as invalid too)::

    import hashlib, hmac, time

    def valid(secret: bytes, header: str, body: bytes, tolerance: int = 300) -> bool:
        pairs = [item.split("=", 1) for item in header.split(",")]
        t = dict(pairs)["t"]
        mac = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        fresh = abs(time.time() - int(t)) <= tolerance
        return fresh and any(k == "v1" and hmac.compare_digest(v, mac) for k, v in pairs)
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Sequence

SIGNATURE_HEADER = "X-Hotline-Signature"
DEFAULT_TOLERANCE = 300.0

_TIMESTAMP = re.compile(r"[0-9]{1,15}")
_DIGEST = re.compile(r"[0-9a-fA-F]{64}")


class SignatureError(Exception):
    """The request must be rejected; the message says why (safe to return to the sender)."""


def _mac(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: bytes | Sequence[bytes], body: bytes, now: float | None = None) -> str:
    """The ``X-Hotline-Signature`` value for ``body`` sent at ``now`` (default: the clock).

    Several secrets give one ``v1`` entry each, so subscribers still holding the old secret and
    those already on the new one both accept the request during a rotation."""
    secrets = [secret] if isinstance(secret, (bytes, bytearray)) else list(secret)
    if not secrets:
        raise ValueError("sign() needs at least one secret")
    timestamp = int(time.time() if now is None else now)
    return ",".join([f"t={timestamp}", *(f"v1={_mac(s, timestamp, body)}" for s in secrets)])


def _parse(header: str) -> tuple[int, list[str]]:
    timestamps: list[str] = []
    digests: list[str] = []
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            raise SignatureError(f"malformed {SIGNATURE_HEADER}: entry {item.strip()!r} has no '='")
        if name == "t":
            timestamps.append(value)
        elif name == "v1":
            # Checked here so compare_digest only ever sees ASCII hex of the right length.
            if not _DIGEST.fullmatch(value):
                raise SignatureError(f"malformed {SIGNATURE_HEADER}: v1 is not a hex SHA-256")
            digests.append(value.lower())
    if len(timestamps) != 1 or not _TIMESTAMP.fullmatch(timestamps[0]):
        raise SignatureError(f"malformed {SIGNATURE_HEADER}: expected exactly one t=<unix seconds>")
    if not digests:
        raise SignatureError(f"malformed {SIGNATURE_HEADER}: no v1 signature")
    return int(timestamps[0]), digests


def verify(secret: bytes, header: str | None, body: bytes, *, now: float | None = None,
           tolerance: float = DEFAULT_TOLERANCE) -> None:
    """Accept (return) or reject (raise :class:`SignatureError`) a signed request.

    ``header`` is the raw ``X-Hotline-Signature`` value (``None`` if absent) and ``body`` the raw
    request body."""
    if header is None or not header.strip():
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    timestamp, digests = _parse(header)
    now = time.time() if now is None else now
    age = now - timestamp
    if age > tolerance:
        raise SignatureError(f"stale signature: timestamp is {age:.0f} s old "
                             f"(tolerance {tolerance:.0f} s)")
    if -age > tolerance:
        raise SignatureError(f"signature timestamp is {-age:.0f} s in the future "
                             f"(tolerance {tolerance:.0f} s)")
    expected = _mac(secret, timestamp, body)
    # No short-circuit: every entry is compared, so timing says nothing about which one matched.
    matches = [hmac.compare_digest(expected, d) for d in digests]
    if not any(matches):
        raise SignatureError("signature does not match the body and secret")

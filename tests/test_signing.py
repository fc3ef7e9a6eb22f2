"""Webhook signatures: what the sidecar sends is what subscribers accept, and nothing else."""

from __future__ import annotations

import textwrap

import pytest

from sidecar import signing
from sidecar.signing import SIGNATURE_HEADER, SignatureError, sign, verify

SECRET = b"whsec-test-0123456789"
BODY = '{"type":"emergency","transfer_id":"t-1","note":"楼道着火"}'.encode()
NOW = 1_718_000_000.0


def test_header_name_and_format():
    assert SIGNATURE_HEADER == "X-Hotline-Signature"
    t, v1 = sign(SECRET, BODY, now=NOW + 0.9).split(",")
    assert t == "t=1718000000"
    assert v1.startswith("v1=") and len(v1) == 3 + 64
    assert int(v1[3:], 16) >= 0


def test_round_trip():
    verify(SECRET, sign(SECRET, BODY, now=NOW), BODY, now=NOW)
    verify(SECRET, sign(SECRET, BODY), BODY)    # both on the real clock


def test_documented_test_vector():
    assert sign(b"example-secret", b'{"type":"ping"}', now=1718000000) == (
        "t=1718000000,v1=d838bdfc5b3f8a49e5e092afd9b07b4e33cb9a6e634adf6e1dde6e1a1eb2a52d")
    assert "d838bdfc5b3f8a49e5e092afd9b07b4e33cb9a6e634adf6e1dde6e1a1eb2a52d" in signing.__doc__


def test_the_documented_subscriber_example_agrees_with_verify():
    example = textwrap.dedent(signing.__doc__.split("::\n\n")[-1])
    namespace: dict = {}
    exec(example, namespace)    # noqa: S102 -- our own docstring, the code subscribers copy
    valid = namespace["valid"]
    header = sign(SECRET, BODY)
    assert valid(SECRET, header, BODY)
    assert not valid(SECRET, header, BODY + b" ")
    assert not valid(b"other", header, BODY)
    assert not valid(SECRET, sign(SECRET, BODY, now=NOW), BODY)    # years old


def test_forged_signature_is_rejected():
    t, v1 = sign(SECRET, BODY, now=NOW).split(",")
    flipped = "0" if v1[-1] != "0" else "1"
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, f"{t},{v1[:-1]}{flipped}", BODY, now=NOW)


def test_wrong_secret_is_rejected():
    with pytest.raises(SignatureError, match="does not match"):
        verify(b"another-secret", sign(SECRET, BODY, now=NOW), BODY, now=NOW)


def test_tampered_body_is_rejected():
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, sign(SECRET, BODY, now=NOW), BODY.replace(b"t-1", b"t-2"), now=NOW)


def test_timestamp_is_part_of_the_signature():
    # Moving t forward to make a captured request look fresh must break the signature.
    _, v1 = sign(SECRET, BODY, now=NOW).split(",")
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, f"t={int(NOW) + 3600},{v1}", BODY, now=NOW + 3600)


def test_stale_timestamp_is_rejected():
    header = sign(SECRET, BODY, now=NOW)
    verify(SECRET, header, BODY, now=NOW + 300)     # the edge of the window is still inside
    with pytest.raises(SignatureError, match="stale.*301 s old"):
        verify(SECRET, header, BODY, now=NOW + 301)
    with pytest.raises(SignatureError, match="stale"):
        verify(SECRET, header, BODY, now=NOW + 31, tolerance=30)


def test_future_timestamp_is_rejected():
    header = sign(SECRET, BODY, now=NOW + 301)
    with pytest.raises(SignatureError, match="future"):
        verify(SECRET, header, BODY, now=NOW)
    verify(SECRET, sign(SECRET, BODY, now=NOW + 300), BODY, now=NOW)


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_header_is_rejected(header):
    with pytest.raises(SignatureError, match="missing X-Hotline-Signature"):
        verify(SECRET, header, BODY, now=NOW)


GOOD_MAC = sign(SECRET, BODY, now=NOW).split(",v1=")[1]


@pytest.mark.parametrize("header", [
    "garbage",
    f"v1={GOOD_MAC}",                                   # no timestamp
    f"t=,v1={GOOD_MAC}",
    f"t=17180000OO,v1={GOOD_MAC}",
    f"t=-1718000000,v1={GOOD_MAC}",
    f"t=1718000000,t=1718000000,v1={GOOD_MAC}",         # which one was signed?
    "t=1718000000",                                     # no signature
    "t=1718000000,v0=abc",                              # only an unknown scheme
    "t=1718000000,v1=",
    "t=1718000000,v1=zz" + GOOD_MAC[2:],
    f"t=1718000000,v1={GOOD_MAC[:-1]}",
    "t=1718000000,v1=" + "é" * 64,
    f"t=1718000000,v1={GOOD_MAC},junk",
])
def test_malformed_header_is_rejected(header):
    with pytest.raises(SignatureError, match="malformed"):
        verify(SECRET, header, BODY, now=NOW)


def test_key_rotation_accepts_any_v1_entry():
    old, new = b"old-secret", b"new-secret"
    header = sign([old, new], BODY, now=NOW)
    assert header.count(",v1=") == 2
    verify(old, header, BODY, now=NOW)
    verify(new, header, BODY, now=NOW)
    with pytest.raises(SignatureError, match="does not match"):
        verify(b"retired-secret", header, BODY, now=NOW)


def test_entries_of_unknown_schemes_are_ignored():
    t, v1 = sign(SECRET, BODY, now=NOW).split(",")
    verify(SECRET, f"{t}, v0=deadbeef, {v1}", BODY, now=NOW)


def test_sign_needs_a_secret():
    with pytest.raises(ValueError):
        sign([], BODY)

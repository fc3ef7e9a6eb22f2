from transfer.keys import KeyCollector

BINDINGS = {"*1": "transfer", "*2": "three_way", "*35": "custom", "#9": "hash"}


def collector() -> KeyCollector:
    return KeyCollector(BINDINGS, inter_digit_timeout=2.0)


def test_a_key_completes_on_its_last_digit():
    c = collector()
    assert c.feed("a", "*", 0) is None
    assert c.feed("a", "1", 0.3) == "transfer"


def test_multi_digit_key_and_hash_lead():
    c = collector()
    assert [c.feed("a", d, t) for d, t in [("*", 0), ("3", 0.1), ("5", 0.2)]] == [None, None, "custom"]
    assert [c.feed("a", d, t) for d, t in [("#", 1), ("9", 1.1)]] == [None, "hash"]


def test_digits_too_far_apart_do_not_make_a_key():
    c = collector()
    c.feed("a", "*", 0)
    assert c.feed("a", "1", 2.5) is None


def test_stray_and_duplicated_digits_are_absorbed():
    c = collector()
    assert c.feed("a", "1", 0) is None            # no lead digit
    assert [c.feed("a", d, 0.1 * i) for i, d in enumerate("**1")] == [None, None, "transfer"]
    assert c.feed("a", "1", 0.5) is None          # duplicate of the last digit: nothing
    assert [c.feed("a", d, 1 + 0.1 * i) for i, d in enumerate("*41")] == [None, None, None]


def test_channels_are_independent():
    c = collector()
    c.feed("agent", "*", 0)
    assert c.feed("caller", "1", 0.1) is None
    assert c.feed("agent", "1", 0.2) == "transfer"

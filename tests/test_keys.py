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


def test_stray_digits_and_late_repeats_are_absorbed():
    c = collector()
    assert c.feed("a", "1", 0) is None            # no lead digit
    assert [c.feed("a", d, 0.2 * i) for i, d in enumerate("**1")] == [None, None, "transfer"]
    assert c.feed("a", "1", 0.9) is None          # a repeat after the key completed: nothing
    assert [c.feed("a", d, 2 + 0.2 * i) for i, d in enumerate("*41")] == [None, None, None]


def test_a_digit_delivered_twice_does_not_change_the_key():
    c = KeyCollector({"*41": "province", "*44": "traffic"}, inter_digit_timeout=2.0)
    events = [("*", 0.0), ("4", 0.25), ("4", 0.27), ("1", 0.5)]   # RFC 4733 duplicate of "4"
    assert [c.feed("a", d, t) for d, t in events] == [None, None, None, "province"]


def test_a_key_with_a_repeated_digit_still_works_at_human_speed():
    c = KeyCollector({"*41": "province", "*44": "traffic"}, inter_digit_timeout=2.0)
    assert [c.feed("a", d, t) for d, t in [("*", 0), ("4", 0.3), ("4", 0.6)]] == [None, None, "traffic"]


def test_channels_are_independent():
    c = collector()
    c.feed("agent", "*", 0)
    assert c.feed("caller", "1", 0.1) is None
    assert c.feed("agent", "1", 0.2) == "transfer"

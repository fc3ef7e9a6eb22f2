"""R6 on a lab of three centres (tests/province/lab.toml): a caller of 110 whose matter belongs
to the provincial 12345 goes 110 -> city 12345 -> province, two one-key transfers that form one
chain. Run by `make test` on that lab (the main suite's lab has two centres)."""

from __future__ import annotations

import pytest

from test_delivery import connect
from test_sidecar import caller_call_id, stack, transfer_of  # noqa: F401  (stack: a fixture)

pytestmark = [pytest.mark.lab, pytest.mark.province]


def test_110_to_12345_to_the_province_is_one_chain_that_carries_the_matter(stack, phones,
                                                                             outcomes, lab):
    call, agent, leg = connect(phones, phones.caller, "110", "110")
    status, matter = stack.api("PUT", f"/calls/{caller_call_id(lab, '110')}/matter", {
        "hotline": "110", "category": "other", "agent": agent.username,
        "summary": "反映省高速公路服务区收费问题，需省级12345受理", "caller_name": "赵先生"})
    assert status == 201
    # Hop 1: 110 -> the city's 12345.
    leg.send_dtmf("*1")
    leg.wait_ended(5)
    city_agent, city_leg = phones.ringing_agent("12345", timeout=8)
    assert city_leg.header("X-Hotline-Matter-Id") == matter["matter_id"]
    assert city_leg.header("X-Hotline-Chain-Id") is None        # a first hop: its own id
    city_leg.accept()
    call.hears(city_leg)
    [first] = outcomes.wait(phones.lib)
    assert (first["origin"], first["target"], first["result"]) == ("110", "12345", "accepted")
    assert first["chain"] == {"id": first["transfer_id"], "hop": 1, "previous": None}
    # Hop 2: the city's 12345 passes it on to the province with its own key (*41).
    outcomes.reset_mark()
    city_leg.send_dtmf("*41")
    city_leg.wait_ended(5)
    prov_agent, prov_leg = phones.ringing_agent("province", timeout=8)
    assert prov_leg.header("X-Hotline-Chain-Id") == first["transfer_id"]
    assert prov_leg.header("X-Hotline-Chain-Hop") == "2"
    assert prov_leg.header("X-Hotline-Matter-Id") == matter["matter_id"]
    assert prov_leg.header("X-Hotline-Origin") == "12345"
    prov_leg.accept()
    call.hears(prov_leg)
    prov_leg.hears(call)
    [second] = outcomes.wait(phones.lib)
    assert (second["origin"], second["target"], second["result"]) == \
        ("12345", "province", "accepted")
    assert second["chain"] == {"id": first["transfer_id"], "hop": 2,
                               "previous": first["transfer_id"]}
    # The matter went all the way: the province's call carries it, under the same id.
    assert second["matter"]["matter_id"] == matter["matter_id"]
    assert second["category"] == "other"
    status, at_province = stack.api("GET", f"/calls/{caller_call_id(lab, 'province')}/matter")
    assert status == 200 and at_province["matter_id"] == matter["matter_id"]
    # The hops' records and tickets link up: the chain lists both, the second hop's tickets
    # name the first hop and its tickets.
    chain = stack.wait(lambda: (lambda r: r[1] if r[0] == 200 and len(r[1]["hops"]) == 2
                                else None)(stack.api("GET", f"/chains/{first['transfer_id']}")),
                       20, "both hops synced")
    hop1, hop2 = chain["hops"]
    assert (hop1["hop"], hop1["transfer_id"], hop1["origin"], hop1["target"]) == \
        (1, first["transfer_id"], "110", "12345")
    assert (hop2["hop"], hop2["transfer_id"], hop2["origin"], hop2["target"]) == \
        (2, second["transfer_id"], "12345", "province")
    assert hop1["matter_id"] == hop2["matter_id"] == matter["matter_id"]
    assert set(hop1["tickets"]) == set(hop2["tickets"]) == {"12345", "110"}
    tickets = [t["body"] for t in stack.tickets("12345") if transfer_of(t) == second["transfer_id"]]
    assert tickets, "no 12345 ticket for the second hop"
    described = tickets[0]["description"]
    assert f"Chain {first['transfer_id']}, hop 2" in described
    assert hop1["tickets"]["12345"] in described and hop1["tickets"]["110"] in described
    assert "反映省高速公路服务区收费问题" in described

    # The province finds it is a city matter after all and passes it back (*1): a third hop,
    # recorded and chained; our sidecar makes no tickets for the province's own transfers (its
    # tickets are the province's system's) and raises no dead letter.
    outcomes.reset_mark()
    prov_leg.send_dtmf("*1")
    prov_leg.wait_ended(5)
    back_agent, back_leg = phones.ringing_agent("12345", timeout=8)
    assert back_leg.header("X-Hotline-Chain-Hop") == "3"
    back_leg.accept()
    call.hears(back_leg)
    [third] = outcomes.wait(phones.lib)
    assert (third["origin"], third["target"], third["chain"]) == (
        "province", "12345", {"id": first["transfer_id"], "hop": 3,
                              "previous": second["transfer_id"]})
    chain = stack.wait(lambda: (lambda r: r[1] if len(r[1].get("hops", [])) == 3 else None)(
        stack.api("GET", f"/chains/{first['transfer_id']}")), 20, "the third hop recorded")
    assert chain["hops"][2]["tickets"] == {} and chain["hops"][2]["result"] == "accepted"
    assert stack.api("GET", f"/transfers/{third['transfer_id']}")[0] == 200
    assert not [w for w in stack.webhooks() if w["event"]["event"] == "dead_letter"]

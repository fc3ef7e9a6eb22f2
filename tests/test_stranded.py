"""Which channels a new active instance moves on from a stopped instance's FastAGI step."""

from __future__ import annotations

from transfer.stranded import stranded, waiting_on_agi

OWN = "127.0.0.1:4587"


def channel(cid, app="TryExec", data="AGI(agi://127.0.0.1:4577/12345/screen)", priority=2,
            context="hotline-screen"):
    return {"id": cid, "name": f"PJSIP/citizen-{cid}",
            "dialplan": {"context": context, "exten": "s", "priority": priority,
                         "app_name": app, "app_data": data}}


def test_a_step_on_another_address_seen_twice_is_stranded_and_goes_to_the_next_priority():
    first = waiting_on_agi([channel("1")], OWN)
    [step] = stranded(first, waiting_on_agi([channel("1")], OWN))
    assert step.name == "PJSIP/citizen-1" and step.address == "127.0.0.1:4577"
    assert step.next() == ("hotline-screen", "s", 3)


def test_a_channel_seen_once_or_that_moved_on_is_left_alone():
    first = waiting_on_agi([channel("1"), channel("2")], OWN)
    later = waiting_on_agi([channel("2", priority=3), channel("3")], OWN)
    assert stranded({}, first) == []
    assert stranded(first, later) == []


def test_own_address_other_applications_and_bad_locations_are_not_candidates():
    channels = [
        channel("own", data=f"AGI(agi://{OWN}/12345/screen)"),
        channel("plain-agi", app="AGI", data="agi://127.0.0.1:4577/12345/route,water"),
        channel("stasis", app="Stasis", data="hotline-12345,inbound"),
        channel("queue", app="Queue", data="agents"),
        channel("no-address", data="AGI(/usr/share/asterisk/agi-bin/x.agi)"),
        channel("key-without-action", app="AGI", data="agi://127.0.0.1:4577/12345/key"),
        channel("other-command", app="AGI", data="agi://127.0.0.1:4577/12345/probe,x"),
        channel("bad-priority", priority="x"),
        {"id": "no-plan", "name": "PJSIP/x"},
    ]
    assert set(waiting_on_agi(channels, OWN)) == {"plain-agi"}


def test_a_key_stuck_on_a_bridged_agent_carries_its_action():
    # As measured on Asterisk 22: the agent's channel of a Queue() call while its key's AGI runs.
    agent = channel("a2", app="AGI", data="agi://127.0.0.1:4577/12345/key,transfer",
                    context="from-agents", priority=1)
    first = waiting_on_agi([agent], OWN)
    [step] = stranded(first, waiting_on_agi([agent], OWN))
    assert (step.command, step.argument) == ("key", "transfer")


def test_the_skipped_commands_are_the_fastagi_servers_own():
    from agi.server import AgiServer
    from transfer.stranded import KEY, SKIPPABLE

    assert SKIPPABLE | {KEY} <= set(AgiServer.COMMANDS)

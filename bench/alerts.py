"""Emergency alert latency (R4): from the 12345 agent's ``*3`` to the signed webhook at a subscriber.

On the bench lab, with the service and the sidecar as their own processes: a citizen calls
12345, an agent answers and presses ``*3``; the alert travels ARI app → Redis stream
``hotline:alerts`` → sidecar forwarder → HMAC-signed webhook → the stand-in's verifying
receiver. Measured per run, on one clock (everything runs on this machine):

* ``key_to_webhook``: from the moment the test phone is told to send ``*3`` to the receipt of the
  verified webhook (includes the two RFC 4733 digits themselves, ~0.2 s);
* ``app_to_webhook``: from the ARI app's stream entry (its id is a millisecond timestamp) to the
  receipt, i.e. the sidecar's part.

Target (issue 6): a signed alert within one second.

    python -m bench.alerts [--config bench/lab.toml] [--runs 20]   # the lab must be up
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from pathlib import Path

import redis

from bench.results import percentiles, write_result
from bench.stack import ROOT, Stack



def _webhooks(url: str) -> list[dict]:
    with urllib.request.urlopen(url + "/_standin/webhooks", timeout=5) as resp:
        return json.loads(resp.read())


def run(config: Path, lab_descriptor: dict, runs: int = 20) -> dict:
    r = redis.Redis.from_url(lab_descriptor["redis"]["url"])
    hook = next(h.url for h in Stack.settings_of(config).sidecar.webhooks
                if "emergency" in h.events)
    receiver = hook.removesuffix("/_standin/webhook")
    key_to_hook, app_to_hook, missed = [], [], 0
    with Stack(config, lab_descriptor, sidecar=True) as stack:
        phones = stack.phones()
        for _ in range(runs):
            call = phones.citizen.dial("12345")
            agent, leg = phones.ringing_agent("12345")
            leg.accept()
            leg.hears(call)
            seen = len(_webhooks(receiver))
            pressed = time.time()
            leg.send_dtmf("*3")
            try:
                alert = phones.lib.wait_for(
                    lambda: [w for w in _webhooks(receiver)[seen:]
                             if w["event"]["event"] == "emergency"], 5, "the emergency webhook")[0]
            except Exception:                      # noqa: BLE001 - a miss is a figure too
                missed += 1
            else:
                got = alert["received_at"]
                key_to_hook.append((got - pressed) * 1000)
                entry = alert["event"]["id"].removeprefix("alert-")
                app_to_hook.append(got * 1000 - int(entry.split("-")[0]))
            phones.lib.hang_up_all()
            stack.wait_quiet()
    r.close()
    k, a = percentiles(key_to_hook), percentiles(app_to_hook)
    return {
        "benchmark": "alerts", "command": "make bench",
        "figures": [
            {"name": "emergency alert, *3 to signed webhook, p50", "value": k["p50"], "unit": "ms",
             "target": None, "met": None},
            {"name": "emergency alert, *3 to signed webhook, p99", "value": k["p99"], "unit": "ms",
             "target": "<= 1000 ms", "met": k["p99"] <= 1000 and not missed},
            {"name": "emergency alert, app to webhook (sidecar part), p99", "value": a["p99"],
             "unit": "ms", "target": None, "met": None},
            {"name": "emergency alerts missed", "value": missed, "unit": "runs", "target": "0",
             "met": missed == 0},
        ],
        "details": {"runs": runs, "key_to_webhook_ms": k, "app_to_webhook_ms": a,
                    "note": "key_to_webhook includes sending the two DTMF digits of *3"},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.alerts")
    parser.add_argument("--config", type=Path, default=ROOT / "bench" / "lab.toml")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    desc = Stack.descriptor_of(args.config)
    result = run(args.config, desc, args.runs)
    write_result(result)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

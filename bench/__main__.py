"""``make bench``: every benchmark on the bench lab, one result file each, then the README table.

    python -m bench [--only NAME ...] [--config bench/lab.toml]

The lab (``bench/lab.toml``: its own addresses and ports) is brought up for the run and down
after it, even when a benchmark fails; a failing benchmark is reported and the others still run.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from bench.report import update_readme
from bench.results import write_result
from bench.stack import ROOT, Stack

# In this order: those without a lab first.
BENCHMARKS = ("recommender", "events", "durability", "sidecar", "api", "board", "alerts",
              "latency", "codecs", "load")
NEEDS_LAB = {"durability", "sidecar", "api", "board", "alerts", "latency", "codecs", "load"}


def _lab(config: Path, action: str) -> None:
    subprocess.run([sys.executable, "-m", "hotline_link.cli", "-c", str(config), "lab", action],
                   cwd=ROOT, check=action == "up")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    parser.add_argument("--config", type=Path, default=ROOT / "bench" / "lab.toml")
    args = parser.parse_args(argv)
    failed = []
    lab_up = False
    try:
        for name in (n for n in BENCHMARKS if n in args.only):
            try:
                module = importlib.import_module(f"bench.{name}")
            except ModuleNotFoundError as exc:
                print(f"[bench] {name}: not available ({exc})", flush=True)
                failed.append(name)
                continue
            descriptor = None
            if name in NEEDS_LAB:
                if not lab_up:
                    _lab(args.config, "down")
                    _lab(args.config, "up")
                    lab_up = True
                descriptor = Stack.descriptor_of(args.config)
            print(f"[bench] {name} ...", flush=True)
            started, t0 = datetime.now(timezone.utc), time.monotonic()
            try:
                result = module.run(args.config, descriptor)
            except Exception:                  # noqa: BLE001 - report it, run the others
                traceback.print_exc()
                failed.append(name)
                continue
            path = write_result(result, started, time.monotonic() - t0)
            for fig in result["figures"]:
                mark = {True: "met", False: "MISSED", None: ""}[fig.get("met")]
                print(f"[bench]   {fig['name']}: {fig['value']} {fig['unit']} {mark}", flush=True)
            print(f"[bench] {name}: {path.relative_to(ROOT)}", flush=True)
    finally:
        if lab_up:
            _lab(args.config, "down")
    update_readme()
    if failed:
        print(f"[bench] failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

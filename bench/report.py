"""The README's benchmark table, rewritten from ``bench/results/*.json``.

    python -m bench.report

Only the part between ``<!-- bench:start -->`` and ``<!-- bench:end -->`` is replaced, so the
table always shows the latest result of each benchmark, with the command and the machine.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.results import RESULTS

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def _value(v) -> str:
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def table(results: list[dict]) -> str:
    if not results:
        return "No results yet: run `make bench`.\n"
    lines = []
    for r in results:
        m = r.get("machine", {})
        lines.append(f"**{r['benchmark']}** (`{r.get('command', 'make bench')}`, "
                     f"{r.get('started', '?')}, {r.get('duration_s', '?')} s; {m.get('cpu', '?')}, "
                     f"{m.get('cores', '?')} cores, {m.get('memory_gb', '?')} GB, "
                     f"Python {m.get('python', '?')})\n")
        lines.append("| figure | value | target | met |")
        lines.append("| --- | --- | --- | --- |")
        for f in r["figures"]:
            met = {True: "yes", False: "**no**", None: ""}[f.get("met")]
            lines.append(f"| {f['name']} | {_value(f['value'])} {f['unit']} | "
                         f"{f.get('target') or ''} | {met} |")
        lines.append("")
    return "\n".join(lines)


def update_readme(readme: Path = README, results_dir: Path = RESULTS) -> None:
    results = [json.loads(p.read_text()) for p in sorted(results_dir.glob("*.json"))]
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{readme}: markers {START} / {END} not found")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{table(results)}\n{END}{tail}")


if __name__ == "__main__":
    update_readme()
    sys.exit(0)

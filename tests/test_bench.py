"""The benchmark plumbing: percentiles, result files, the README table."""

from __future__ import annotations

import json

from bench import report, results


def test_percentiles_are_nearest_rank():
    p = results.percentiles([float(x) for x in range(1, 101)])
    assert (p["n"], p["p50"], p["p95"], p["p99"], p["min"], p["max"]) == (100, 50, 95, 99, 1, 100)
    assert results.percentiles([])["p99"] is None
    assert results.percentiles([7.0])["p50"] == 7.0


def test_result_file_and_readme_table(tmp_path):
    path = results.write_result({"benchmark": "demo", "command": "make bench", "figures": [
        {"name": "speed", "value": 25000.4, "unit": "events/s", "target": ">= 20000", "met": True},
        {"name": "p99", "value": 140.0, "unit": "ms", "target": "<= 100 ms", "met": False}],
        "details": {}}, duration_s=1.25, directory=tmp_path)
    written = json.loads(path.read_text())
    assert written["machine"]["cores"] >= 1 and written["duration_s"] == 1.2
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{report.START}\nold\n{report.END}\nafter\n")
    report.update_readme(readme, tmp_path)
    once = readme.read_text()
    assert "old" not in once and once.endswith(f"{report.END}\nafter\n")
    assert "| speed | 25,000 events/s | >= 20000 | yes |" in once
    assert "| p99 | 140.0 ms | <= 100 ms | **no** |" in once
    report.update_readme(readme, tmp_path)
    assert readme.read_text() == once

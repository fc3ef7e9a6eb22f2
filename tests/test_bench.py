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


def test_native_anchor_ratios_are_ours_over_native_per_transferred_call():
    from bench.load import native_figures

    def cores(app, a, b):
        return {"cores": {"app": app, "asterisk-12345": a, "asterisk-110": b}}
    ours = [{"level": 200, "label": "200 calls", "rate_per_s": 20.0, "cpu": cores(0.4, 0.5, 0.3),
             "phases_ms": {"command->dialing": {"p99": 30.0}}},
            {"level": 200, "label": "200 calls, Redis without AOF", "rate_per_s": 20.0,
             "cpu": cores(9, 9, 9), "phases_ms": {}}]
    native = [{"level": 200, "label": "200 calls, native", "rate_per_s": 10.0,
               "cpu": cores(0.1, 0.2, 0.1), "setup_to_answer_ms": {"p99": 10.0},
               "stranded": 0, "alone_too_long": [], "failed": 1}]
    got = {f["name"]: f for f in native_figures(ours, native)}
    # Ours: 0.8 PBX cores at 20/s = 40 ms a call; native: 0.3 at 10/s = 30 ms.
    assert got["200 calls, native: both PBXs' CPU per transferred call"]["value"] == 30.0
    assert got["200 calls, ours / native: both PBXs' CPU per transferred call"]["value"] == 1.33
    # With the app: 1.2 / 20 = 60 ms against 0.4 / 10 = 40 ms.
    assert got["200 calls, ours / native: app + both PBXs' CPU per transferred call"]["value"] == 1.5
    assert got["200 calls, ours / native: hand-over p99 (command -> dialing / REFER -> done)"][
        "value"] == 3.0
    failed = got["200 calls, native: stranded callers + failed transfers"]
    assert failed["value"] == 1 and failed["met"] is False


def test_profile_layers_count_each_sample_once_per_layer_it_passes_through():
    from bench.profile import summarize
    raw = ("process 1:\"python\";_run_once (asyncio/base_events.py:1);"
           "HotlineApp.handle (ari_app/app.py:3);AriClient.request (ari_app/client.py:9);"
           "ClientSession._request (aiohttp/client.py:5) 6\n"
           "process 1:\"python\";_run_once (asyncio/base_events.py:1);"
           "HotlineApp.handle (ari_app/app.py:3);BoundLogger.info (structlog/_log.py:2) 3\n"
           "process 1:\"python\";select (selectors.py:4) 1\n"
           "garbage line\n")
    got = summarize(raw)
    assert got["samples"] == 10
    layers = got["layers_inclusive"]
    assert layers["event handlers (ari_app/)"] == 0.9
    assert layers["ARI REST requests (ari_app/client.py)"] == 0.6
    assert layers["logging (structlog)"] == 0.3
    assert layers["asyncio event loop itself"] == 1.0
    assert got["top_leaf_functions"][0] == {"function": "ClientSession._request (aiohttp/client.py)",
                                            "share": 0.6}

"""``threadlog bench concurrency`` runs end to end on a small load and prints its figures
(a smoke test of the benchmark's code path, not a timing: timings live in BENCHMARKS.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_concurrency_bench_prints_its_figures_and_the_litellm_baseline() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "threadlog.cli", "bench", "concurrency", "--generations", "4",
         "--latency", "0.05", "--direct-provider"], capture_output=True, text=True, timeout=120,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    assert res.returncode == 0, res.stderr[-2000:]
    figures = json.loads(res.stdout.strip().splitlines()[-1])
    assert figures["succeeded"] == 4
    assert figures["direct_provider_succeeded"] == 4
    assert figures["ideal_s"] == 0.1
    for key in ("makespan_s", "efficiency", "litellm_only_efficiency",
                "litellm_cpu_ms_per_call", "relative_to_litellm_only",
                "efficiency_direct_provider"):
        assert figures[key] > 0, key

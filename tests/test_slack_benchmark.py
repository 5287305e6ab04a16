"""The Slack card latency benchmark still runs, in quick mode, so it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "slack_latency.py"


def test_it_runs_the_slack_latency_benchmark_in_quick_mode():
    result = subprocess.run([sys.executable, str(BENCHMARK), "--quick", "--json"], capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["emails"] == figures["cards"] == 20 and figures["duplicate_cards"] == 0
    assert figures["latency_s"]["p95"] is not None and figures["latency_s"]["p95"] < 10

"""The mail-out benchmark still runs, in quick mode, so it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "mailout.py"


def test_it_runs_the_mailout_benchmark_in_quick_mode():
    result = subprocess.run([sys.executable, str(BENCHMARK), "--quick", "--json"], capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["delivered"]["blast"] == figures["delivered"]["send"] == 500
    assert figures["send_report"]["remaining"] == 0
    assert all(rate > 0 for rate in figures["per_second"].values())

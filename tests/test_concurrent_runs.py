"""benchmarks/concurrent_runs.py, the benchmark behind the README's figure for several trainings on
one GPU: it runs the copies it is asked for, each from its own seed, and reports a failing copy in
one line."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--set", "meta_batch_size=2", "--set", "episodes_per_task=2", "--set", "horizon=10"]
ONE_THREAD = ["--set", "num_threads=1", "--set", "sampler.num_threads=1"]


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "benchmarks/concurrent_runs.py", "--config", "experiments/navigation_2d.yaml"]
    return subprocess.run([*cmd, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_concurrent_runs_times_every_copy_of_every_count(tmp_path):
    out = tmp_path / "runs.json"
    proc = _run(tmp_path, "--copies", "1,2", "--iterations", "2", *SMALL, *ONE_THREAD, "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["copies"] for r in rows] == [1, 2]
    for r in rows:
        assert [len(s) for s in r["seconds"]] == [2] * r["copies"]
        assert r["torch_threads"] == [1] * r["copies"]
        assert all(m > 0 for m in r["median_seconds_per_iteration"])
    assert rows[0]["vs_one_copy"] == 1.0
    assert rows[1]["vs_one_copy"] == rows[1]["iterations_per_hour"] / rows[0]["iterations_per_hour"]
    assert "vs one copy" in proc.stdout


def test_concurrent_runs_reports_a_failing_copy_or_bad_counts_in_one_line(tmp_path):
    proc = _run(tmp_path, "--copies", "2", "--iterations", "1", "--set", "inner.lr=-1")
    assert proc.returncode == 2
    assert proc.stderr.startswith("concurrent_runs: a copy failed: ") and "inner.lr" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = _run(tmp_path, "--copies", "0,2")
    assert proc.returncode == 2 and "'0,2'" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1

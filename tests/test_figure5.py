"""experiments/figure5.sh, the script behind the README's results rows: it builds a task's
reproduction end to end, and a second call continues (and here extends) the runs it finds."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from metarl.cli import main
from tests.test_baselines import _interrupt_at_update

ROOT = Path(__file__).resolve().parents[1]


def _figure5(
    tmp_path: Path, iterations: int, seeds: str = "0", jobs: str = "1", ok: bool = True, **more: str
):
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "ITERATIONS": str(iterations),
        "SEEDS": seeds,
        "JOBS": jobs,
        "TASKS": "3",
        "PPO_STEPS": "128",
        "RUNS": str(tmp_path / "runs"),
        "RESULTS": str(tmp_path / "results"),
        "EXTRA": "--set meta_batch_size=2 --set episodes_per_task=2 --set validation.tasks=2",
        **more,
    }
    proc = subprocess.run(
        ["bash", "experiments/figure5.sh", "navigation_2d"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if ok:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_figure5_writes_every_output_then_extends_its_runs_and_keeps_the_baselines(tmp_path, monkeypatch):
    # The first call trains both seeds at once; the second continues them one after the other.
    first = _figure5(tmp_path, iterations=1, seeds="0 1", jobs="2")
    for seed in (0, 1):
        assert f"[maml_trpo seed {seed}] run directory:" in first.stdout
    results, runs = tmp_path / "results", tmp_path / "runs" / "navigation_2d"
    expected = [
        "maml_trpo_seed0.json",
        "maml_trpo_seed1.json",
        "random.json",
        "pretrained.json",
        "oracle.json",
    ]
    for name in [*expected, "compare.txt", "navigation_2d.png", "maml.pt"]:
        assert (results / name).is_file(), name
    for name in expected:
        assert json.loads((results / name).read_text())["num_tasks"] == 3, name
    compare = (results / "compare.txt").read_text()
    assert "maml_trpo" in compare and "paper: maml" in compare
    run = runs / "maml_trpo_seed0"
    assert torch.load(run / "checkpoint.pt", weights_only=True)["iteration"] == 1
    baselines = {kind: (runs / kind / "checkpoint.pt").read_bytes() for kind in ("random", "pretrained")}
    scored = {kind: (results / f"{kind}.json").stat().st_mtime_ns for kind in ("random", "pretrained")}
    for kind in ("random", "pretrained"):  # as after a clone: each checkpoint newer than its JSON
        later = (results / f"{kind}.json").stat().st_mtime_ns + 10**9
        os.utime(runs / kind / "checkpoint.pt", ns=(later, later))

    # An oracle interrupted after its first PPO update: the second call continues it.
    oracle = runs / "oracle"
    args = [
        "baseline",
        "oracle",
        str(ROOT / "experiments/navigation_2d.yaml"),
        "--out",
        str(oracle),
        "--force",
    ]
    _interrupt_at_update(monkeypatch, 2, [])
    assert main([*args, "--timesteps", str(3 * 4096), "--num-envs", "2"]) == 130
    monkeypatch.undo()
    assert (oracle / "ppo-resume.pt").is_file() and not (oracle / "checkpoint.pt").exists()

    _figure5(tmp_path, iterations=2, seeds="0 1")
    assert torch.load(run / "checkpoint.pt", weights_only=True)["iteration"] == 2
    assert torch.load(runs / "maml_trpo_seed1" / "checkpoint.pt", weights_only=True)["iteration"] == 2
    finished = torch.load(oracle / "checkpoint.pt", weights_only=True)
    assert finished["timesteps"] == 3 * 4096 and not (oracle / "ppo-resume.pt").exists()
    assert (results / "oracle.json").stat().st_mtime_ns > (oracle / "checkpoint.pt").stat().st_mtime_ns
    for kind, before in baselines.items():
        assert (runs / kind / "checkpoint.pt").read_bytes() == before, kind
        # Not re-scored: the JSON names this checkpoint's SHA-256, whatever the file times say.
        assert (results / f"{kind}.json").stat().st_mtime_ns == scored[kind], kind
    zip_digest = hashlib.sha256((oracle / "ppo.zip").read_bytes()).hexdigest()
    assert json.loads((results / "oracle.json").read_text())["checkpoint"]["ppo"]["sha256"] == zip_digest
    maml = results / "maml_trpo_seed0.json"
    assert maml.stat().st_mtime_ns > (run / "best.pt").stat().st_mtime_ns  # re-scored if best.pt moved

    # A third call re-scores what does not describe the checkpoint there now, whatever file times say.
    def edit(name: str, change) -> None:
        result = json.loads((results / name).read_text())
        change(result)
        (results / name).write_text(json.dumps(result))

    edit("maml_trpo_seed0.json", lambda r: r["checkpoint"].update(sha256="0" * 64))  # another best.pt
    edit("random.json", lambda r: r.pop("checkpoint"))  # written before the record: file times decide
    edit("pretrained.json", lambda r: r.pop("checkpoint"))
    edit("oracle.json", lambda r: r["checkpoint"]["ppo"].update(sha256="0" * 64))  # another ppo.zip
    older = (runs / "random" / "checkpoint.pt").stat().st_mtime_ns - 10**9
    os.utime(results / "random.json", ns=(older, older))
    written = {p.name: p.stat().st_mtime_ns for p in results.glob("*.json")}
    _figure5(tmp_path, iterations=2, seeds="0 1")
    again = {name for name, t in written.items() if (results / name).stat().st_mtime_ns != t}
    assert again == {"maml_trpo_seed0.json", "random.json", "oracle.json"}
    digest = hashlib.sha256((run / "best.pt").read_bytes()).hexdigest()
    assert json.loads(maml.read_text())["checkpoint"]["sha256"] == digest


def test_figure5_with_jobs_finishes_the_other_seeds_and_fails_naming_the_seed_that_failed(tmp_path):
    broken = tmp_path / "runs" / "navigation_2d" / "maml_trpo_seed1"
    broken.mkdir(parents=True)
    (broken / "checkpoint.pt").write_bytes(b"not a checkpoint")
    proc = _figure5(tmp_path, iterations=1, seeds="0 1", jobs="2", ok=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("figure5.sh: failed: maml_trpo seed 1 ")
    assert "[maml_trpo seed 1] metarl: error:" in proc.stdout
    assert (tmp_path / "results" / "maml_trpo_seed0.json").is_file()  # the other seed finished
    assert (broken / "checkpoint.pt").read_bytes() == b"not a checkpoint"  # left as it was
    assert not (tmp_path / "results" / "random.json").exists()  # stopped before the baselines


def test_figure5_jobs_must_be_a_whole_number(tmp_path):
    proc = _figure5(tmp_path, iterations=1, jobs="two", ok=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "JOBS must be a whole number >= 1, got 'two'"
    assert not (tmp_path / "runs").exists()


def test_figure5_runs_a_variant_beside_the_configs_runs_and_leaves_the_configs_checkpoint(tmp_path):
    extra = "--set meta_batch_size=2 --set episodes_per_task=2 --set validation.tasks=2"
    _figure5(tmp_path, iterations=1, VARIANT="lr0.2", EXTRA=f"{extra} --set inner.lr=0.2")
    results, runs = tmp_path / "results", tmp_path / "runs" / "navigation_2d"
    run = runs / "maml_trpo_lr0.2_seed0"
    assert torch.load(run / "checkpoint.pt", weights_only=True)["config"]["inner"]["lr"] == 0.2
    assert (results / "maml_trpo_lr0.2_seed0.json").is_file() and (results / "navigation_2d.png").is_file()
    assert not (results / "maml.pt").exists() and not (runs / "maml_trpo_seed0").exists()
    assert any(
        line.startswith("maml_trpo_lr0.2 ") for line in (results / "compare.txt").read_text().splitlines()
    )

    _figure5(tmp_path, iterations=1)  # then the config's own: its checkpoint is maml.pt
    best = (runs / "maml_trpo_seed0" / "best.pt").read_bytes()
    assert (results / "maml.pt").read_bytes() == best
    rows = [line.split()[0] for line in (results / "compare.txt").read_text().splitlines() if line]
    assert {"maml_trpo_seed0", "maml_trpo_lr0.2_seed0"} <= set(rows)

    proc = _figure5(tmp_path, iterations=1, ok=False, VARIANT="a b")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "VARIANT must be letters, digits, '.' or '-', got 'a b'"

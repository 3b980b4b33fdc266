"""Opening files never runs code, and a run directory is never clobbered: crafted checkpoints and
SB3 models, foreign files in --out, --force, a second writer, kills between writes, full disks,
non-finite runs, SIGTERM."""

import base64
import json
import os
import pickle
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from metarl.cli import main
from metarl.runs import RunDirectory
from tests.conftest import TINY as _TINY

ROOT = Path(__file__).parents[1]
TINY = dict(_TINY)


def _config(tmp_path, **overrides):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, **overrides}))
    return path


def _train(tmp_path, run, *extra, **overrides):
    return main(["train", str(_config(tmp_path, **overrides)), "--out", str(run), "--no-progress", *extra])


class _Payload:
    """Unpickling this creates ``marker``: proof that a loader ran code from the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


# --- files that must not run code --------------------------------------------------------------
def test_a_crafted_checkpoint_runs_no_code_under_evaluate_or_resume(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = {"config": dict(TINY), "iteration": 1, "policy": _Payload(marker)}
    torch.save(evil, tmp_path / "evil.pt")
    torch.load(tmp_path / "evil.pt", weights_only=False)  # the payload is live...
    assert marker.exists()
    marker.unlink()

    assert main(["evaluate", str(tmp_path / "evil.pt"), "--tasks", "2"]) == 2
    assert "weights_only=True" in _one_error_line(capsys)
    run = tmp_path / "run"
    run.mkdir()
    torch.save(evil, run / "checkpoint.pt")
    assert main(["train", "--resume", str(run), "--no-progress"]) == 2
    assert "does not unpickle" in _one_error_line(capsys)
    # A raw pickle (not torch's zip format) is not read at all.
    (tmp_path / "raw.pt").write_bytes(pickle.dumps(_Payload(marker)))
    assert main(["evaluate", str(tmp_path / "raw.pt")]) == 2
    assert "is not a metarl checkpoint" in _one_error_line(capsys)
    assert not marker.exists()  # ...and no command of metarl's ran it


def test_a_crafted_ppo_zip_runs_no_code_and_the_oracle_still_evaluates(tmp_path, capsys):
    pytest.importorskip("stable_baselines3")
    from stable_baselines3 import PPO

    run = tmp_path / "oracle"
    config = _config(tmp_path, horizon=10)
    args = ["baseline", "oracle", str(config), "--out", str(run), "--timesteps", "64", "--num-envs", "1"]
    assert main(args) == 0
    capsys.readouterr()
    good = tmp_path / "good.json"
    assert main(["evaluate", str(run), "--tasks", "3", "--json", str(good)]) == 0

    marker = tmp_path / "pwned"
    zip_path = run / "ppo.zip"
    with zipfile.ZipFile(zip_path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    data = json.loads(entries["data"])
    data["policy_class"][":serialized:"] = base64.b64encode(pickle.dumps(_Payload(marker))).decode()
    entries["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(zip_path, "w") as archive:
        for name, blob in entries.items():
            archive.writestr(name, blob)
    with pytest.raises(Exception):  # noqa: B017  (SB3 itself runs the payload, then fails)
        PPO.load(zip_path, device="cpu")
    assert marker.exists()
    marker.unlink()

    again = tmp_path / "again.json"
    assert main(["evaluate", str(run), "--tasks", "3", "--json", str(again)]) == 0
    assert not marker.exists()
    assert json.loads(again.read_text())["mean_return"] == json.loads(good.read_text())["mean_return"]


def test_files_that_are_not_checkpoints_are_one_line_errors(tmp_path, capsys):
    thermo = tmp_path / "thermo.yaml"
    thermo.write_text("temperature: 21\n")
    assert main(["evaluate", str(thermo)]) == 2
    assert "is not a metarl checkpoint (expected a .pt file" in _one_error_line(capsys)
    torch.save({"policy": {"w": torch.zeros(2)}}, tmp_path / "bare.pt")
    assert main(["evaluate", str(tmp_path / "bare.pt")]) == 2
    assert "is not a metarl checkpoint: it has no config" in _one_error_line(capsys)


def test_resume_on_a_baseline_run_is_refused(tmp_path, capsys):
    run = tmp_path / "random"
    assert main(["baseline", "random", str(_config(tmp_path)), "--out", str(run)]) == 0
    capsys.readouterr()
    before = (run / "checkpoint.pt").read_bytes()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 2
    assert "holds the random baseline" in _one_error_line(capsys)
    assert (run / "checkpoint.pt").read_bytes() == before


# --- the run directory ---------------------------------------------------------------------------
def test_a_users_files_in_out_are_never_overwritten_or_deleted(tmp_path, capsys):
    run = tmp_path / "mine"
    run.mkdir()
    (run / "config.yaml").write_text("my: config\n")
    (run / "checkpoint-000001.pt").write_bytes(b"my own weights")
    assert _train(tmp_path, run) == 2
    line = _one_error_line(capsys)
    assert "holds files metarl did not write (checkpoint-000001.pt, config.yaml)" in line
    assert _train(tmp_path, run, "--force") == 2  # --force replaces only metarl's own files
    capsys.readouterr()
    assert (run / "config.yaml").read_text() == "my: config\n"
    assert (run / "checkpoint-000001.pt").read_bytes() == b"my own weights"

    # Files without metarl's names may share the folder; pruning never touches them.
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "notes.txt").write_text("keep me")
    (shared / "checkpoint-old.pt").write_bytes(b"not ours")
    assert _train(tmp_path, shared, "--set", "checkpoint.keep_last=1", iterations=3) == 0
    assert (shared / "notes.txt").read_text() == "keep me"
    assert (shared / "checkpoint-old.pt").read_bytes() == b"not ours"
    assert sorted(p.name for p in shared.glob("checkpoint-0*.pt")) == ["checkpoint-000003.pt"]


def test_force_removes_every_file_of_the_earlier_run(tmp_path):
    run = tmp_path / "run"
    assert _train(tmp_path, run, iterations=3) == 0
    assert len(list(run.glob("checkpoint-0*.pt"))) == 3
    assert _train(tmp_path, run, "--force", "--set", "seed=5", iterations=1) == 0
    assert sorted(p.name for p in run.glob("checkpoint-0*.pt")) == ["checkpoint-000001.pt"]
    assert len(list(run.glob("events.out.tfevents.*"))) == 1
    best = torch.load(run / "best.pt", weights_only=True)
    assert best["iteration"] == 1 and best["config"]["seed"] == 5


def test_a_second_writer_is_refused_in_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    with RunDirectory(run):  # another process training there
        assert _train(tmp_path, run) == 2
        line = _one_error_line(capsys)
        assert f"run directory {str(run)!r} is in use by another metarl process (pid {os.getpid()})" in line
    assert not (run / "checkpoint.pt").exists()
    assert _train(tmp_path, run) == 0  # the lock goes with its holder


def test_best_is_never_behind_the_checkpoint_after_a_kill_between_the_writes(tmp_path, monkeypatch):
    from metarl import runs

    assert _train(tmp_path, tmp_path / "full", iterations=5) == 0
    real_save, calls = runs.RunDirectory.save, []

    def killed_after_best(self, name, state):
        calls.append((name, state["iteration"]))
        if name == "checkpoint.pt" and state["iteration"] >= 2 and ("best.pt", state["iteration"]) in calls:
            raise KeyboardInterrupt  # a kill between the two writes
        return real_save(self, name, state)

    monkeypatch.setattr(runs.RunDirectory, "save", killed_after_best)
    run = tmp_path / "killed"
    assert _train(tmp_path, run, iterations=5) == 130
    monkeypatch.setattr(runs.RunDirectory, "save", real_save)
    best = torch.load(run / "best.pt", weights_only=True)["iteration"]
    assert best > torch.load(run / "checkpoint.pt", weights_only=True)["iteration"]
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    for name in ("best.pt", "checkpoint.pt"):
        want = torch.load(tmp_path / "full" / name, weights_only=True)
        got = torch.load(run / name, weights_only=True)
        assert got["iteration"] == want["iteration"], name
        for key, tensor in want["policy"].items():
            assert torch.equal(got["policy"][key], tensor), (name, key)


def test_a_full_disk_is_one_line_and_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    from metarl import checkpoint

    real_save, saves = torch.save, []

    def disk_full(obj, f, *args, **kwargs):
        saves.append(obj["iteration"])
        if obj["iteration"] == 2:
            f.write(b"partial")
            raise OSError(28, "No space left on device", str(f.name))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", disk_full)
    run = tmp_path / "run"
    assert _train(tmp_path, run, iterations=3) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "No space left on device" in err and "last good checkpoint (iteration 1) is kept" in err
    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    assert torch.load(run / "checkpoint.pt", weights_only=True)["iteration"] == 1
    assert not list(run.glob(".*.tmp"))
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0


def test_an_out_that_cannot_be_created_is_one_line(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert _train(tmp_path, tmp_path / "afile" / "run") == 2
    assert "afile' is a file, not a directory" in _one_error_line(capsys)
    assert _train(tmp_path, tmp_path / "afile") == 2
    assert "is a file; name a directory" in _one_error_line(capsys)
    assert (tmp_path / "afile").read_text() == "x"


# --- runs that go wrong --------------------------------------------------------------------------
def test_a_run_with_nan_returns_stops_with_a_clear_message(tmp_path, capsys):
    # Reptile accepts its (zero-advantage) steps on NaN rewards: the returns must stop it.
    env = "tests.faulty_envs:faulty/Point-v0"
    run = tmp_path / "run"
    code = _train(
        tmp_path,
        run,
        env=env,
        algorithm="reptile",
        env_kwargs={"fault": "nan", "after": 20},  # NaN from iteration 2 on
        horizon=10,
        iterations=20,
        max_failed_iterations=3,
    )
    assert code == 3
    err = capsys.readouterr().err
    assert "stopped after 3 iterations in a row" in err and "non-finite returns" in err
    assert torch.load(run / "checkpoint.pt", weights_only=True)["iteration"] == 4


def test_sigterm_stops_cleanly_and_says_how_to_resume(tmp_path):
    config = _config(tmp_path, iterations=200, meta_batch_size=5, episodes_per_task=5, horizon=50)
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "metarl", "train", str(config), "--out", str(run), "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "checkpoint.pt").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert f"continue with: metarl train --resume {run}" in err and "Traceback" not in err
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert f"the checkpoint of iteration {state['iteration']} is kept" in err


def test_the_oracle_of_a_users_env_evaluates_from_its_module(tmp_path, capsys, monkeypatch):
    pytest.importorskip("stable_baselines3")
    module = tmp_path / "my_oracle_tasks.py"
    module.write_text((ROOT / "tests" / "user_env_example.py").read_text())
    monkeypatch.chdir(tmp_path)
    config = _config(tmp_path, env="my_oracle_tasks:my/PointGoal-v0", horizon=10)
    run = tmp_path / "oracle"
    args = ["baseline", "oracle", str(config), "--out", str(run), "--timesteps", "64", "--num-envs", "1"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--tasks", "2"]) == 0
    assert "oracle on 2 held-out tasks" in capsys.readouterr().out


def test_every_published_checkpoint_loads_without_unpickling():
    from metarl.checkpoint import load_checkpoint, load_sb3_training_state
    from metarl.runs import PPO_RESUME

    # The results' checkpoints and those of the committed run directories behind them.
    published = sorted((ROOT / "experiments").rglob("*.pt"))
    assert any("results" in p.parts for p in published)
    for path in published:
        state = load_checkpoint(path)
        assert state["config"]["env"], path
        if path.name == PPO_RESUME:  # an unfinished PPO baseline's state
            assert state["ppo"]["policy"], path
        elif state.get("method") != "oracle":  # the oracle's parameters are its ppo.zip's
            assert state["policy"], path
    # The PPO baselines' SB3 models: parameters, Adam's state and counters, nothing unpickled.
    models = sorted((ROOT / "experiments").rglob("ppo.zip"))
    for path in models:
        assert load_sb3_training_state(path)["policy"], path


# --- what a second reader found --------------------------------------------------------------------
def test_pruned_checkpoints_leave_the_manifest_so_a_later_user_file_of_that_name_is_kept(tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(tmp_path, run, "--set", "checkpoint.keep_last=1", iterations=3) == 0
    assert "checkpoint-000002.pt" not in RunDirectory(run).owned()
    (run / "checkpoint-000002.pt").write_bytes(b"the user's")
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 2
    assert "holds files metarl did not write (checkpoint-000002.pt)" in _one_error_line(capsys)
    assert _train(tmp_path, run, "--force", iterations=3) == 2
    capsys.readouterr()
    assert (run / "checkpoint-000002.pt").read_bytes() == b"the user's"


def test_what_is_left_of_an_earlier_run_is_removed_only_with_force(tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(tmp_path, run) == 0
    (run / "checkpoint.pt").unlink()  # the user freed some space, keeping best.pt
    best = (run / "best.pt").read_bytes()
    capsys.readouterr()
    assert _train(tmp_path, run) == 2
    line = _one_error_line(capsys)
    assert "holds files of an earlier run (best.pt, " in line and "use --force" in line
    assert (run / "best.pt").read_bytes() == best
    assert _train(tmp_path, run, "--force") == 0


def test_an_interrupted_baseline_leaves_only_files_it_claimed(tmp_path, monkeypatch):
    from metarl import reference_methods

    def interrupted_ppo(config, oracle, timesteps, num_envs, seed, log_dir, **kwargs):
        log_dir.mkdir(parents=True)
        (log_dir / "progress.csv").write_text("time/iterations\n1\n")
        raise KeyboardInterrupt

    monkeypatch.setattr(reference_methods, "train_ppo", interrupted_ppo)
    run = tmp_path / "pretrained"
    assert main(["baseline", "pretrained", str(_config(tmp_path)), "--out", str(run)]) == 130
    directory = RunDirectory(run)
    assert directory.foreign() == [] and "ppo/progress.csv" in directory.owned()
    monkeypatch.undo()
    assert main(["baseline", "random", str(_config(tmp_path)), "--out", str(run), "--force"]) == 0
    assert not (run / "ppo").exists()


def test_an_interrupt_before_the_first_checkpoint_says_how_to_start_again(tmp_path, capsys, monkeypatch):
    from metarl.trainer import Trainer
    from tests.conftest import interrupt_at_iteration

    config = _config(tmp_path)
    run = tmp_path / "run"
    real_train = Trainer.train

    def interrupted_in_its_first_iteration(self):
        interrupt_at_iteration(self, 1)
        return real_train(self)

    monkeypatch.setattr(Trainer, "train", interrupted_in_its_first_iteration)
    assert main(["train", str(config), "--out", str(run), "--no-progress"]) == 130
    monkeypatch.undo()
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (
        f"metarl: interrupted (Ctrl-C) before the first checkpoint; start again with: "
        f"metarl train {config} --out {run} --force"
    )
    assert main(["train", str(config), "--out", str(run), "--no-progress", "--force"]) == 0


def test_sigterm_to_the_process_group_with_async_workers_prints_no_traceback(tmp_path):
    config = _config(
        tmp_path,
        iterations=200,
        meta_batch_size=2,
        episodes_per_task=2,
        horizon=50,
        sampler={"backend": "async"},
    )
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "metarl", "train", str(config), "--out", str(run), "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "checkpoint.pt").exists():
        time.sleep(0.05)
    time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)  # as a job scheduler does: the workers get it too
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    lines = err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("run directory:"), lines  # no traceback, no warning
    assert "continue with: metarl train --resume" in lines[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without a GPU")
def test_a_checkpoint_trained_on_a_gpu_evaluates_on_a_cpu_only_machine(tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(tmp_path, run, iterations=1) == 0
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    state["config"]["device"] = "cuda"  # as saved by a run on a GPU
    torch.save(state, tmp_path / "gpu.pt")
    assert main(["evaluate", str(tmp_path / "gpu.pt"), "--tasks", "2", "--steps", "1"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--device", "cuda", "--no-progress"]) == 2
    assert "use --device cpu" in _one_error_line(capsys)

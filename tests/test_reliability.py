"""Runs survive kills and bad envs: checkpoint history, exact resume after SIGKILL, guarded
numerics that stop a run cleanly, and sampler faults that name the env and task."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from metarl.cli import main
from metarl.errors import SamplerError
from metarl.sampling.local import Sampler
from tests.conftest import TINY as _TINY

ROOT = Path(__file__).parents[1]
FAULTY = "tests.faulty_envs:faulty/Point-v0"
TINY = {**_TINY, "iterations": 5}


def write(tmp_path, **overrides):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**TINY, **overrides}))
    return path


def test_last_n_checkpoints_are_kept_beside_latest_and_best(tmp_path):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                str(write(tmp_path)),
                "--out",
                str(run),
                "--no-progress",
                "--set",
                "checkpoint.keep_last=2",
            ]
        )
        == 0
    )
    kept = sorted(p.name for p in run.glob("checkpoint-*.pt"))
    assert kept == ["checkpoint-000004.pt", "checkpoint-000005.pt"]
    for name, iteration in [("checkpoint-000004.pt", 4), ("checkpoint-000005.pt", 5), ("checkpoint.pt", 5)]:
        assert torch.load(run / name, weights_only=True)["iteration"] == iteration
    assert (run / "best.pt").exists()


def test_nan_rewards_are_caught_and_repeated_failed_steps_stop_the_run_cleanly(tmp_path, capsys):
    run = tmp_path / "run"
    # NaN rewards from iteration 2 on (10 steps per episode, 2 samples per iteration)
    config = write(
        tmp_path, env=FAULTY, env_kwargs={"fault": "nan", "after": 20}, horizon=10, max_failed_iterations=2
    )
    assert main(["train", str(config), "--out", str(run), "--no-progress"]) == 3
    err = capsys.readouterr().err
    assert "stopped after 2 iterations in a row without an accepted meta-step" in err
    assert "non-finite or flat step" in err and "Traceback" not in err
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["iteration"] == 3 and state["failed_in_a_row"] == 2
    good = torch.load(run / "checkpoint-000001.pt", weights_only=True)["policy"]
    for name, tensor in good.items():
        assert torch.equal(tensor, state["policy"][name])  # the rejected steps changed nothing
    for tensor in state["policy"].values():
        assert torch.isfinite(tensor).all()  # nothing poisoned


def test_an_env_raising_in_step_names_env_and_task_and_keeps_the_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    # 10 steps per episode, 2 samples per iteration: each sub-env raises in iteration 2.
    config = write(tmp_path, env=FAULTY, env_kwargs={"fault": "raise", "after": 25}, horizon=10)
    assert main(["train", str(config), "--out", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "Traceback" not in err[-1]  # "run directory: ..." then the error
    assert err[-1].startswith(f"metarl: error: {FAULTY}: the env failed during step ")
    assert "FloatingPointError in step: simulated blow-up (task " in err[-1]
    assert torch.load(run / "checkpoint.pt", weights_only=True)["iteration"] == 1


def test_a_user_env_that_breaks_the_protocol_is_refused_before_training(tmp_path, capsys):
    config = write(tmp_path, env="tests.faulty_envs:faulty/NoGetTask-v0", horizon=10)
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "metarl: error: NoGetTask: missing method get_task(). "
        "Fix: define sample_tasks(n, rng), set_task(task) and get_task() on the env class"
    )
    assert not (tmp_path / "run").exists()


def test_a_dead_async_worker_is_reported_with_the_env_id(tmp_path):
    sampler = Sampler(FAULTY, num_tasks=2, episodes_per_task=1, horizon=5, backend="async")
    tasks = sampler.sample_tasks(2, np.random.default_rng(0))
    sampler.set_tasks(tasks)
    from metarl.policies import GaussianMLPPolicy

    policy = GaussianMLPPolicy(1, 1, [4])
    sampler.env.unwrapped.processes[1].kill()
    sampler.env.unwrapped.processes[1].join()
    with pytest.raises(SamplerError, match=r"faulty/Point-v0: a vector-env worker process died"):
        sampler.sample(policy, policy.params(), np.random.default_rng(0), torch.Generator())
    sampler.close()


def _params(path):
    return torch.load(path, weights_only=True)["policy"]


def test_sigkill_mid_iteration_then_resume_matches_an_uninterrupted_run(tmp_path):
    # Big enough that an iteration takes a while, so the kill lands inside one.
    config = write(
        tmp_path, iterations=6, meta_batch_size=10, episodes_per_task=10, horizon=100, num_threads=1
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "metarl", "train", str(config), "--no-progress"]
    subprocess.run([*cmd, "--out", str(tmp_path / "full")], check=True, env=env, capture_output=True)

    run = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, "--out", str(run)], env=env, stderr=subprocess.DEVNULL)
    deadline = time.time() + 900  # generous: a loaded machine only slows the run down
    while time.time() < deadline and proc.poll() is None:
        if (run / "checkpoint.pt").exists() and torch.load(run / "checkpoint.pt", weights_only=True)[
            "iteration"
        ] >= 2:
            break
        time.sleep(0.02)
    time.sleep(0.1)  # into the next iteration
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(run / "checkpoint.pt", weights_only=True)["iteration"]
    assert 2 <= killed_at < 6

    subprocess.run(
        [*cmd[:-2], "--resume", str(run), "--no-progress"], check=True, env=env, capture_output=True
    )
    full, resumed = _params(tmp_path / "full" / "checkpoint.pt"), _params(run / "checkpoint.pt")
    for name in full:
        assert torch.equal(full[name], resumed[name]), name
    # TensorBoard holds one point per iteration, none duplicated by the repeated iteration
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run))
    events.Reload()
    steps = [e.step for e in events.Scalars("return/post_adaptation")]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_a_ppo_baseline_killed_mid_training_resumes(tmp_path):
    # SB3 names its own log files; they must be the run's from the start, not only once training
    # ends, or a SIGKILL leaves them looking like the user's and the run refuses to resume.
    config = write(tmp_path, num_threads=1)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    run = tmp_path / "pretrained"
    cmd = [sys.executable, "-m", "metarl", "baseline"]
    steps = ["--timesteps", str(40 * 2048), "--num-envs", "1"]
    proc = subprocess.Popen(
        [*cmd, "pretrained", str(config), "--out", str(run), *steps],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 900
    while time.time() < deadline and proc.poll() is None and not (run / "ppo-resume.pt").exists():
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (run / "ppo-resume.pt").exists() and not (run / "checkpoint.pt").exists()
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "ppo").iterdir())
    target = torch.load(run / "ppo-resume.pt", weights_only=True)["ppo"]["num_timesteps"] + 2048

    done = subprocess.run(
        [*cmd, "--resume", str(run), "--timesteps", str(target)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert torch.load(run / "checkpoint.pt", weights_only=True)["timesteps"] == target
    assert not (run / "ppo-resume.pt").exists()


def test_evaluate_on_another_env_needs_the_same_spaces(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(write(tmp_path, iterations=1)), "--out", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    assert (
        main(["evaluate", str(run), "--env", "metarl/HalfCheetahVel-v0", "--tasks", "2", "--steps", "0"]) == 2
    )
    info, err = capsys.readouterr().err.strip().splitlines()  # what is scored, then the error
    assert info.startswith(f"scoring {run / 'checkpoint.pt'} (maml_trpo, iteration 1)")
    assert err == (
        "metarl: error: the policy was trained on metarl/Navigation2D-v0 (2-dim observations, "
        "2-dim actions) and cannot run on metarl/HalfCheetahVel-v0 (17-dim observations, 6-dim "
        "actions); evaluate it on an env with the same spaces"
    )
    out = tmp_path / "eval.json"
    args = ["evaluate", str(run), "--env", FAULTY, "--tasks", "2", "--steps", "1", "--json", str(out)]
    assert main(args) == 2  # 1-dim spaces: refused too
    assert (run / "checkpoint.pt").exists() and not out.exists()


def test_two_runs_with_the_same_seed_log_identical_metrics(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = []
    for name in ("a", "b"):
        assert (
            main(
                ["train", str(write(tmp_path, iterations=3)), "--out", str(tmp_path / name), "--no-progress"]
            )
            == 0
        )
        events = EventAccumulator(str(tmp_path / name))
        events.Reload()
        logs.append(
            {
                tag: [e.value for e in events.Scalars(tag)]
                for tag in events.Tags()["scalars"]
                if not tag.startswith(("time/", "sampler/env_steps_per_s"))
            }
        )
    assert logs[0] == logs[1] and len(logs[0]) > 10


class _FakeRay:
    """Stands in for ``ray``: ``init`` raises the given exceptions in turn, then succeeds."""

    def __init__(self, failures):
        self.failures, self.inits, self.shutdowns, self.up = list(failures), [], 0, False

    def is_initialized(self):
        return self.up

    def init(self, **kwargs):
        self.inits.append(kwargs)
        if self.failures:
            raise self.failures.pop(0)
        self.up = True

    def shutdown(self):
        self.shutdowns += 1


TIMEOUT = Exception("The current node timed out during startup. This could happen because\n  the GCS...")


@pytest.mark.parametrize(
    ("failures", "address", "inits", "error"),
    [
        ([TIMEOUT, TIMEOUT], "", 3, None),  # a slow start is tried again, and the third one works
        ([TIMEOUT] * 3, "local", 3, "Ray could not start on this machine (3 attempts): The current node"),
        ([ValueError("bad num_cpus")], "", 1, "Ray could not start on this machine: bad num_cpus"),
        ([ConnectionError("no GCS")], "10.0.0.1:6379", 1, "cannot reach the Ray cluster at '10.0.0.1:6379'"),
    ],
)
def test_ray_starts_again_after_a_startup_timeout_and_fails_in_one_line(
    monkeypatch, failures, address, inits, error
):
    from metarl.errors import MetarlError
    from metarl.sampling import ray as ray_sampling

    fake = _FakeRay(failures)
    monkeypatch.setattr(ray_sampling, "import_ray", lambda: fake)
    if error is None:
        assert ray_sampling.init_ray(address, num_cpus=2) is fake and fake.up
    else:
        with pytest.raises(MetarlError) as caught:
            ray_sampling.init_ray(address, num_cpus=2)
        assert str(caught.value).startswith(error) and "\n" not in str(caught.value)
    assert len(fake.inits) == inits and fake.inits[0]["num_cpus"] == 2
    assert fake.inits[0]["include_dashboard"] is False
    assert fake.inits[0].get("address") == (address if address not in ("", "local") else None)

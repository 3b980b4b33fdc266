"""The metarl command: training writes a run, evaluate writes JSON, user errors exit 2."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import metarl
from metarl.cli import main
from metarl.config import load_config
from metarl.trainer import Trainer
from tests.conftest import TINY as _TINY
from tests.conftest import interrupt_at_iteration, replace_after_loading

TINY = dict(_TINY)


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def test_train_writes_config_events_and_checkpoint_then_evaluate_writes_json(tmp_path, tiny_config):
    run = tmp_path / "run"
    assert main(["train", str(tiny_config), "--out", str(run), "--no-progress"]) == 0
    assert list(run.glob("events.out.tfevents.*"))
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["iteration"] == 2 and set(state["rng"]) == {"numpy", "torch_generator"}
    assert (run / "best.pt").exists()
    assert yaml.safe_load((run / "config.yaml").read_text())["horizon"] == 12

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in [
        "return/pre_adaptation",
        "return/post_adaptation",
        "meta/accepted",
        "meta/kl",
        "meta/surrogate_before",
        "meta/surrogate_after",
        "trpo/line_search_steps",
        "sampler/env_steps",
        "sampler/env_steps_per_s",
        "time/sampling_s",
        "time/adaptation_s",
        "time/meta_step_s",
    ]:
        assert tag in tags, tag
    assert [e.step for e in events.Scalars("return/post_adaptation")] == [1, 2]

    out = tmp_path / "eval.json"
    args = ["evaluate", str(run), "--tasks", "4", "--steps", "2", "--seed", "3", "--json", str(out)]
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert result["env_id"] == "metarl/Navigation2D-v0" and result["num_tasks"] == 4
    assert result["steps"] == [0, 1, 2]
    assert len(result["mean_return"]) == len(result["stderr"]) == 3
    assert len(result["per_task_returns"]) == 4 and all(len(r) == 3 for r in result["per_task_returns"])
    assert all(r < 0 for r in result["mean_return"])
    assert result["lr"] == 0.1 and result["later_lr"] == 0.05  # the paper's protocol by default
    digest = hashlib.sha256((run / "checkpoint.pt").read_bytes()).hexdigest()
    assert result["checkpoint"] == {"file": str(run / "checkpoint.pt"), "sha256": digest}
    assert main(args) == 0  # same seed, same held-out tasks, same numbers
    assert json.loads(out.read_text())["mean_return"] == result["mean_return"]


def test_evaluate_set_env_kwargs_runs_the_held_out_tasks_in_that_env(tmp_path, tiny_config, capsys):
    # A tiny ant run; scored before adapting, the survival bonus is all that changes the returns.
    config = tmp_path / "ant.yaml"
    config.write_text(yaml.safe_dump({**_TINY, "env": "metarl/AntDir-v0", "iterations": 1}))
    run = tmp_path / "run"
    assert main(["train", str(config), "--out", str(run), "--no-progress"]) == 0
    args = ["evaluate", str(run), "--tasks", "2", "--steps", "0", "--json"]
    assert main([*args, str(tmp_path / "paper.json")]) == 0
    bonus = ["--set", "env_kwargs.healthy_reward=1.0"]
    assert main([*args, str(tmp_path / "bonus.json"), *bonus]) == 0
    paper, shaped = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("paper", "bonus"))
    assert paper["env_kwargs"] == {} and shaped["env_kwargs"] == {"healthy_reward": 1.0}
    gain = np.subtract(shaped["per_task_returns"], paper["per_task_returns"])
    np.testing.assert_allclose(gain, 0.95 * _TINY["horizon"], rtol=1e-5)  # no ant falls in 12 steps
    api = metarl.evaluate(run, num_tasks=2, steps=0, env_kwargs={"healthy_reward": 1.0})  # in Python
    assert api["env_kwargs"] == {"healthy_reward": 1.0} and api["mean_return"] == shaped["mean_return"]
    capsys.readouterr()
    code = main([*args, str(tmp_path / "bad.json"), "--set", "env_kwargs.healthy_rewards=1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "unknown argument 'healthy_rewards'" in err
    assert not (tmp_path / "bad.json").exists()


def test_a_configs_eval_env_kwargs_are_what_its_runs_and_baselines_are_scored_with(tmp_path, capsys):
    # Trained with PEARL's survival bonus (1.0), scored with the paper's (0.05) unless evaluate
    # --set names another, which replaces both.
    config = tmp_path / "ant.yaml"
    bonus = {"env_kwargs": {"healthy_reward": 1.0}, "eval_env_kwargs": {"healthy_reward": 0.05}}
    ant = {**_TINY, "env": "metarl/AntDir-v0", "iterations": 1, **bonus}
    config.write_text(yaml.safe_dump(ant))
    run, oracle = tmp_path / "run", tmp_path / "oracle"
    assert main(["train", str(config), "--out", str(run), "--no-progress"]) == 0
    args = ["baseline", "oracle", str(config), "--out", str(oracle), "--timesteps", "256", "--num-envs", "2"]
    assert main(args) == 0
    for directory in (run, oracle):
        scored = {}
        for name, extra in (("own", []), ("set", ["--set", "env_kwargs.healthy_reward=0.5"])):
            out = tmp_path / f"{directory.name}-{name}.json"
            command = ["evaluate", str(directory), "--tasks", "2", "--steps", "0", "--json", str(out)]
            assert main([*command, *extra]) == 0
            scored[name] = json.loads(out.read_text())
        assert scored["own"]["env_kwargs"] == {"healthy_reward": 0.05}
        assert scored["set"]["env_kwargs"] == {"healthy_reward": 0.5}
        # The same episodes, paid 0.5 - 0.05 more per step alive (12 steps at most).
        gain = np.subtract(scored["set"]["per_task_returns"], scored["own"]["per_task_returns"])
        assert np.all(gain > 0) and np.all(gain <= 0.45 * _TINY["horizon"] + 1e-6)
        if directory == run:  # none of its ants falls
            np.testing.assert_allclose(gain, 0.45 * _TINY["horizon"], rtol=1e-5)

    capsys.readouterr()  # a value the env does not take: one line, and no run directory
    config.write_text(yaml.safe_dump({**ant, "eval_env_kwargs": {"healthy_rewards": 1.0}}))
    code = main(["train", str(config), "--out", str(tmp_path / "bad"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert err.startswith("metarl: error: eval_env_kwargs {'healthy_rewards': 1.0}: ")
    assert "unknown argument 'healthy_rewards'" in err and "healthy_reward," in err
    assert not (tmp_path / "bad").exists()


def test_evaluate_refuses_a_checkpoint_replaced_while_it_was_loaded(
    tmp_path, tiny_config, capsys, monkeypatch
):
    run = tmp_path / "run"
    assert main(["train", str(tiny_config), "--out", str(run), "--no-progress"]) == 0
    import metarl.evaluation

    replace_after_loading(monkeypatch, metarl.evaluation, "load_policy", run / "checkpoint.pt")
    capsys.readouterr()
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(run), "--tasks", "2", "--steps", "1", "--json", str(out)]) == 2
    assert "was replaced while it was loaded; run evaluate again" in capsys.readouterr().err
    assert not out.exists()


def test_resume_continues_to_the_same_parameters_as_an_uninterrupted_run(tmp_path, tiny_config):
    config = load_config(tiny_config, ["iterations=3"])
    full = Trainer(config, tmp_path / "full", progress=False)
    full.train()

    part = Trainer(config, tmp_path / "part", progress=False)
    interrupt_at_iteration(part, 3)
    with pytest.raises(KeyboardInterrupt):
        part.train()
    resumed = Trainer.resume(tmp_path / "part", progress=False)
    assert resumed.iteration == 2
    resumed.train()
    for (name, a), b in zip(
        full.policy.state_dict().items(), resumed.policy.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def test_resume_extends_a_finished_run_exactly_and_refuses_keys_that_change_the_computation(
    tmp_path, tiny_config, capsys
):
    full = Trainer(load_config(tiny_config, ["iterations=3"]), tmp_path / "full", progress=False)
    full.train()
    run = tmp_path / "run"
    assert main(["train", str(tiny_config), "--out", str(run), "--no-progress"]) == 0  # 2 iterations
    before = (run / "checkpoint.pt").read_bytes()
    capsys.readouterr()

    for bad, words in [
        ("inner.lr=0.2", ["inner.lr", "iterations, num_threads"]),
        ("iterations=1", ["iterations=1", "already completed 2"]),
        ("iterations=many", ["iterations", "many"]),
    ]:
        assert main(["train", "--resume", str(run), "--set", bad, "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and all(w in err for w in words), err
        assert (run / "checkpoint.pt").read_bytes() == before

    threads = f"num_threads={torch.get_num_threads()}"
    args = ["train", "--resume", str(run), "--set", "iterations=3", "--set", threads, "--no-progress"]
    assert main(args) == 0
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["iteration"] == 3
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["iterations"] == 3 and saved["num_threads"] == torch.get_num_threads()
    for name, value in full.policy.state_dict().items():
        assert torch.equal(value, state["policy"][name]), name


def test_out_dir_with_a_run_is_not_overwritten_without_force(tmp_path, tiny_config, capsys):
    run = tmp_path / "run"
    assert main(["train", str(tiny_config), "--out", str(run), "--no-progress"]) == 0
    before = (run / "checkpoint.pt").read_bytes()
    assert main(["train", str(tiny_config), "--out", str(run), "--no-progress"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (run / "checkpoint.pt").read_bytes() == before


@pytest.mark.parametrize(
    "change, message",
    [
        ({"inner": {"lrr": 0.1}}, "unknown config key 'inner.lrr'; did you mean 'inner.lr'?"),
        ({"meta_batch_size": -4}, "'meta_batch_size' must be an integer >= 1, got -4"),
        ({"inner": {"lr": 0}}, "'inner.lr' must be a number > 0, got 0"),
        ({"horizon": "long"}, "'horizon' must be an integer, got 'long'"),
        (
            {"env": "metarl/HalfCheetahVell-v0"},
            "unknown env id 'metarl/HalfCheetahVell-v0'; did you mean",
        ),
    ],
)
def test_bad_config_exits_2_with_one_clear_line(tmp_path, capsys, change, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**TINY, **change}))
    assert main(["train", str(path), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_missing_file_malformed_yaml_and_bad_set_exit_2(tmp_path, tiny_config, capsys):
    assert main(["train", str(tmp_path / "nope.yaml")]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("env: [unclosed\n")
    assert main(["train", str(bad)]) == 2
    assert "not valid YAML at line" in capsys.readouterr().err
    assert main(["train", str(tiny_config), "--set", "trpo.max_kll=1"]) == 2
    assert "did you mean 'trpo.max_kl'" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "no-run")]) == 2
    assert "not found" in capsys.readouterr().err
    run = tmp_path / "run"
    assert main(["train", str(tiny_config), "--out", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--tasks", "2", "--later-lr", "0"]) == 2
    assert "step sizes must be > 0, got 0.1 and 0.0" in capsys.readouterr().err
    assert main(["evaluate", str(run), "--tasks", "2", "--episodes", "0"]) == 2
    assert "need --episodes >= 1, got 0" in capsys.readouterr().err


def test_set_reaches_nested_keys(tiny_config):
    config = load_config(tiny_config, ["inner.lr=0.05", "seed=7", "policy.hidden_sizes=[16, 16]"])
    assert config.inner.lr == 0.05 and config.seed == 7 and config.policy.hidden_sizes == [16, 16]


def test_console_script_prints_no_traceback_on_user_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**TINY, "iterationz": 3}))
    proc = subprocess.run(
        [sys.executable, "-m", "metarl.cli", "train", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "did you mean 'iterations'" in proc.stderr


def test_envs_lists_every_family(capsys):
    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    for env_id in [
        "metarl/Navigation2D-v0",
        "metarl/HalfCheetahVel-v0",
        "metarl/HalfCheetahDir-v0",
    ]:
        assert env_id in out
    assert "U[0, 2]" in out


def test_user_env_from_its_own_module_trains_from_the_cli(tmp_path, monkeypatch):
    module = tmp_path / "my_tasks.py"
    module.write_text(Path(__file__).with_name("user_env_example.py").read_text())
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / "user.yaml"
    config.write_text(yaml.safe_dump({**TINY, "env": "my_tasks:my/PointGoal-v0"}))
    run = tmp_path / "run"
    assert main(["train", str(config), "--out", str(run), "--no-progress"]) == 0
    assert (run / "checkpoint.pt").exists()


def test_bench_sampler_and_iteration_print_their_figures_and_write_json(tmp_path, capsys):
    out = tmp_path / "sampler.json"
    args = ["bench", "sampler", "--num-envs", "4", "--async-envs", "2", "--steps", "5", "--rounds", "1"]
    assert main([*args, "--threads", "1,2", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "a/d =" in printed and "AsyncVectorEnv, 2 processes" in printed and "2 thread(s)" in printed
    result = json.loads(out.read_text())
    for key in ["batched", "sync", "async", "physics_limit", "physics_alone"]:
        assert result[f"{key}_steps_per_s"] > 0
    assert result["batched_over_sync"] == result["batched_steps_per_s"] / result["sync_steps_per_s"]
    assert set(result["threads"]) == {"1", "2"}
    # mj_step is timed on the states the batched run went through: 4 sampled envs x 5 steps
    assert result["mj_step_states"] == 20 and result["mj_step_us"] > 0

    out = tmp_path / "iteration.json"
    tiny = ["--set", "meta_batch_size=2", "--set", "episodes_per_task=2", "--set", "horizon=10"]
    args = ["bench", "iteration", "--config", "experiments/halfcheetah_vel.yaml", "--iterations", "1"]
    assert main([*args, *tiny, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["shares"]) == {"sampling", "adaptation", "meta_step"}
    assert 0 < sum(result["shares"].values()) <= 1.0 + 1e-9
    assert "meta-step" in capsys.readouterr().out


def test_training_with_task_subsampled_curvature_runs(tmp_path, tiny_config):
    args = ["train", str(tiny_config), "--out", str(tmp_path / "run"), "--no-progress"]
    assert main([*args, "--set", "trpo.curvature_tasks=0.5"]) == 0
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["iteration"] == 2


def test_bench_curvature_steps_once_per_fraction_from_the_runs_theta(tmp_path, tiny_config, capsys):
    run = tmp_path / "run"
    assert main(["train", str(tiny_config), "--out", str(run), "--no-progress"]) == 0
    before = {f.name: f.read_bytes() for f in run.iterdir() if f.suffix == ".pt"}
    out = tmp_path / "curvature.json"
    args = ["bench", "curvature", "--run", str(run), "--fractions", "1,0.34", "--batches", "2"]
    assert main([*args, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Navigation2D" in printed and "at iteration 2" in printed and "cosine to 1" in printed
    result = json.loads(out.read_text())
    assert result["reference"] == 1.0 and list(result["fractions"]) == ["0.34", "1.0"]
    sub, exact = result["fractions"]["0.34"], result["fractions"]["1.0"]
    assert (sub["tasks"], exact["tasks"]) == (1, 3)  # round(0.34 * 3) tasks, then all 3
    assert len(result["per_batch"]["1.0"]) == 2
    for row in result["per_batch"]["1.0"]:
        # the exact step against itself; an accepted step gains and stays in the trust region
        assert row["cosine"] == pytest.approx(1.0) or not row["accepted"]
        assert row["gain"] > 0 and 0 < row["kl"] <= 0.01 or not row["accepted"]
    assert exact["gain_ratio"] == pytest.approx(1.0) or exact["gain"] <= 0
    # the run is read, never written
    assert before == {f.name: f.read_bytes() for f in run.iterdir() if f.suffix == ".pt"}


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["--fractions", "0"], "--fractions: got '0', expected numbers in (0, 1]"),
        (["--fractions", "half"], "--fractions: got 'half'"),
        (["--batches", "0"], "--batches: got 0"),
        ([], "bench curvature needs --run"),
    ],
)
def test_bench_curvature_bad_arguments_are_one_line_errors(tmp_path, capsys, args, phrase):
    run = ["--run", str(tmp_path)] if args else []
    assert main(["bench", "curvature", *run, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert phrase in err and len(err.splitlines()) == 1


def test_bench_curvature_refuses_a_learner_without_a_trpo_step(tmp_path, capsys):
    config = tmp_path / "promp.yaml"
    config.write_text(yaml.safe_dump({**TINY, "algorithm": "promp", "iterations": 1}))
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["bench", "curvature", "--run", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs a MAML-TRPO checkpoint" in err and "promp" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("flag", "value"), [("--threads", "0"), ("--threads", "two"), ("--num-envs", "0"), ("--rounds", "0")]
)
def test_bench_sampler_bad_numbers_are_one_line_errors(capsys, flag, value):
    assert main(["bench", "sampler", flag, value]) == 2
    err = capsys.readouterr().err.strip()
    assert flag in err and value in err
    assert len(err.splitlines()) == 1


def test_bench_sampler_on_a_non_mujoco_family_is_a_one_line_error(capsys):
    assert main(["bench", "sampler", "--env", "metarl/Navigation2D-v0", "--num-envs", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "has none" in err and len(err.splitlines()) == 1


def test_worked_example_of_a_user_env_trains_from_its_config(tmp_path, capsys, monkeypatch):
    # experiments/windy_point.py is a user's module: no vectorized twin, so Gymnasium's
    # SyncVectorEnv samples it, and the CLI says so.
    monkeypatch.chdir(Path(__file__).parents[1])
    run = tmp_path / "run"
    tiny = ["iterations=2", "meta_batch_size=3", "episodes_per_task=2", "horizon=10"]
    args = ["train", "experiments/windy_point.yaml", "--out", str(run), "--no-progress"]
    assert main([*args, *[x for kv in tiny for x in ("--set", kv)]]) == 0
    assert "sampler: SyncVectorEnv (6 envs, backend sync)" in capsys.readouterr().err
    assert torch.load(run / "checkpoint.pt", weights_only=True)["iteration"] == 2


@pytest.mark.parametrize("config", ["experiments/bandit.yaml", "experiments/tabular_mdp.yaml"])
def test_discrete_families_train_and_evaluate_with_a_categorical_policy(tmp_path, capsys, config):
    run = tmp_path / "run"
    tiny = ["iterations=2", "meta_batch_size=3", "episodes_per_task=4"]
    args = ["train", config, "--out", str(run), "--no-progress"]
    assert main([*args, *[x for kv in tiny for x in ("--set", kv)]]) == 0
    assert "VectorEnv (12 envs, backend vector_entry_point)" in capsys.readouterr().err
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert "logits.0.weight" in state["policy"] and "log_std" not in state["policy"]
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(run), "--tasks", "3", "--steps", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["steps"] == [0, 1] and len(result["mean_return"]) == 2

"""Bad user input is one line on stderr, exit code 2, no traceback, and nothing saved is lost
(README: "user mistakes print one line"). One parametrized test per class of mistake."""

import errno
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml

import metarl.bench
import metarl.evaluation
from metarl.cli import main
from metarl.config import load_config
from metarl.errors import ConfigError
from tests.conftest import TINY as _TINY
from tests.user_env_example import PointGoal

TINY = {**_TINY, "iterations": 1}


def one_line_error(capsys, code: int, phrase: str) -> str:
    """Assert exit code 2 and a single stderr line holding ``phrase``; return that line."""
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("metarl: error: ")
    assert phrase in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A trained tiny run (1 iteration), shared by the tests that must leave it untouched."""
    folder = tmp_path_factory.mktemp("trained")
    config = folder / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    assert main(["train", str(config), "--out", str(folder / "run"), "--no-progress"]) == 0
    return folder / "run"


def write_config(tmp_path, text: str | bytes | None = None, **changes) -> Path:
    path = tmp_path / "config.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text if text is not None else yaml.safe_dump({**TINY, **changes}))
    return path


# --- 1. config values: non-finite numbers, seeds, init_log_std, non-UTF-8 files ---------------


@pytest.mark.parametrize(
    ("yaml_text", "sets", "phrase"),
    [
        (None, ["inner.lr=.inf"], "'inner.lr' must be a finite number, got inf (allowed: a number > 0)"),
        ("inner:\n  lr: .inf\n", [], "'inner.lr' must be a finite number, got inf"),
        (None, ["trpo.max_kl=.nan"], "'trpo.max_kl' must be a finite number, got nan"),
        (None, ["trpo.max_kl=inf"], "'trpo.max_kl' must be a finite number, got 'inf'"),
        (None, ["gamma=1e400"], "'gamma' must be a finite number, got '1e400'"),
        (None, ["policy.init_log_std=-.inf"], "'policy.init_log_std' must be a finite number"),
        (None, ["policy.init_log_std=3"], "'policy.init_log_std' must be a number in [-5, 2]"),
        (None, ["inner.lr=long"], "'inner.lr' must be a number, got 'long'"),
        (None, ["seed=-1"], "'seed' must be an integer from 0 to 4294967295 (2**32 - 1), got -1"),
        (None, [f"seed={2**32}"], "'seed' must be an integer from 0 to 4294967295"),
        (b"env: metarl/Navigation2D-v0\n# caf\xe9\n", [], "is not UTF-8 text (byte 0xe9 at offset 33)"),
    ],
)
def test_bad_config_values_are_one_line(tmp_path, capsys, yaml_text, sets, phrase):
    if isinstance(yaml_text, str):
        yaml_text = yaml.safe_dump(TINY) + yaml_text
    config = write_config(tmp_path, yaml_text)
    out = tmp_path / "run"
    code = main(
        ["train", str(config), "--out", str(out), "--no-progress", *[x for s in sets for x in ("--set", s)]]
    )
    one_line_error(capsys, code, phrase)
    assert not out.exists()


@pytest.mark.parametrize("sets", [["inner.lr=1e-3"], ["inner.lr=1E-3"], []])
def test_scientific_notation_is_a_number_in_yaml_and_in_set(tmp_path, sets):
    # YAML 1.1 reads 1e-3 (no dot) as a string; the config takes it as the number it means.
    config = write_config(tmp_path, yaml.safe_dump(TINY) + "inner:\n  lr: 1e-3\ntrpo:\n  max_kl: 5e-2\n")
    loaded = load_config(config, sets)
    assert loaded.inner.lr == 0.001 and isinstance(loaded.inner.lr, float)
    assert loaded.trpo.max_kl == 0.05
    assert load_config(config, ["policy.init_log_std=-0.5", "seed=4294967295"]).seed == 2**32 - 1


# --- 2. env_kwargs the env does not take -----------------------------------------------------


@pytest.mark.parametrize(
    ("env", "backend", "env_kwargs", "phrase"),
    [
        (
            "metarl/Navigation2D-v0",
            "auto",
            {"foo": 1},
            "env_kwargs for 'metarl/Navigation2D-v0': unknown argument 'foo'; "
            "Navigation2DVectorEnv takes no env_kwargs",
        ),
        (
            "metarl/Navigation2D-v0",
            "sync",
            {"foo": 1, "bar": 2},
            "unknown arguments 'bar', 'foo'; Navigation2DEnv takes: task",
        ),
        (
            "metarl/Navigation2D-v0",
            "async",
            {"foo": 1},
            "unknown argument 'foo'; Navigation2DEnv takes: task",
        ),
        (
            "metarl/Navigation2D-v0",
            "sync",
            {"task": 1},
            "({'task': 1}): Navigation2DEnv raised TypeError: Navigation2D expects a GoalTask",
        ),
        (  # a user's env: refused by make_env before the protocol check
            "tests.user_env_example:my/PointGoal-v0",
            "auto",
            {"goal": 0.3},
            "env_kwargs for 'tests.user_env_example:my/PointGoal-v0': unknown argument 'goal'; "
            "PointGoal takes no env_kwargs",
        ),
    ],
)
def test_env_kwargs_the_env_does_not_take_are_one_line(tmp_path, capsys, env, backend, env_kwargs, phrase):
    config = write_config(tmp_path, env=env, env_kwargs=env_kwargs, sampler={"backend": backend})
    out = tmp_path / "run"
    one_line_error(capsys, main(["train", str(config), "--out", str(out), "--no-progress"]), phrase)
    assert not out.exists()


@pytest.mark.parametrize(
    ("env", "phrase"),
    [
        (
            "metarl/Navigation2D-v0",
            "eval_env_kwargs {'goal': 0.3}: env_kwargs for 'metarl/Navigation2D-v0': unknown argument "
            "'goal'; Navigation2DEnv takes: task",
        ),
        (
            "tests.user_env_example:my/PointGoal-v0",
            "eval_env_kwargs {'goal': 0.3}: env_kwargs for 'tests.user_env_example:my/PointGoal-v0': "
            "unknown argument 'goal'; PointGoal takes no env_kwargs",
        ),
    ],
)
def test_eval_env_kwargs_the_env_does_not_take_are_one_line_before_anything_runs(
    tmp_path, capsys, env, phrase
):
    # Only a validation or an evaluation would use them: refused before training or a baseline.
    config = write_config(tmp_path, env=env, eval_env_kwargs={"goal": 0.3})
    out = tmp_path / "run"
    for command in (["train", str(config), "--no-progress"], ["baseline", "random", str(config)]):
        one_line_error(capsys, main([*command, "--out", str(out)]), phrase)
        assert not out.exists()
    with pytest.raises(ConfigError) as error:  # and in Python
        metarl.MAMLTRPO(env, eval_env_kwargs={"goal": 0.3}, meta_batch_size=3, horizon=12)
    assert str(error.value) == phrase


def test_env_kwargs_of_a_mujoco_family_list_the_arguments_of_its_base_classes(tmp_path, capsys):
    config = write_config(tmp_path, env="metarl/HalfCheetahVel-v0", env_kwargs={"ctrl_cost_weight": 1.0})
    args = [
        "train",
        str(config),
        "--out",
        str(tmp_path / "run"),
        "--no-progress",
        "--set",
        "sampler.backend=sync",
    ]
    one_line_error(capsys, main(args), "HalfCheetahVelEnv sets 'ctrl_cost_weight' itself")
    config.write_text(yaml.safe_dump({**TINY, "env": "metarl/HalfCheetahVel-v0", "env_kwargs": {"fo": 1}}))
    line = one_line_error(capsys, main(args), "unknown argument 'fo'; HalfCheetahVelEnv takes: task, ")
    assert "reset_noise_scale" in line  # gymnasium's HalfCheetahEnv, reached through **kwargs


# --- 3. a user's env that raises or returns the wrong thing during the env check --------------


class ResetRaises(PointGoal):
    def reset(self, *, seed=None, options=None):
        raise RuntimeError("no reset today")


class StepRaises(PointGoal):
    def step(self, action):
        raise ValueError("no step\ntoday")  # a message over two lines stays one line


class ArrayReward(PointGoal):
    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, np.array([reward]), terminated, truncated, info


class FourValues(PointGoal):
    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward, terminated or truncated, info


class SampleTasksRaises(PointGoal):
    def sample_tasks(self, n, rng):
        raise KeyError("tasks")


BROKEN = [ResetRaises, StepRaises, ArrayReward, FourValues, SampleTasksRaises]
for _cls in BROKEN:
    if f"errors/{_cls.__name__}-v0" not in gym.registry:
        gym.register(f"errors/{_cls.__name__}-v0", entry_point=_cls, max_episode_steps=10)


@pytest.mark.parametrize(
    ("name", "phrase"),
    [
        (
            "ResetRaises",
            "ResetRaises: reset(seed=0) raised RuntimeError: no reset today. "
            "Fix: make reset(seed=None, options=None) return (observation, info) for any seed",
        ),
        (
            "StepRaises",
            "StepRaises: step(action) raised ValueError: no step today. Fix: make step(action) accept",
        ),
        (
            "ArrayReward",
            "ArrayReward: step() returned a reward of type ndarray of shape (1,) (array([",
        ),
        ("FourValues", "FourValues: step() returned 4 values. Fix: return (observation, reward, terminated"),
        ("SampleTasksRaises", "SampleTasksRaises: sample_tasks(4, rng) raised KeyError: 'tasks'. Fix: "),
    ],
)
def test_a_user_env_that_raises_or_returns_a_bad_reward_in_the_check_is_one_line(
    tmp_path, capsys, name, phrase
):
    config = write_config(tmp_path, env=f"tests.test_errors:errors/{name}-v0", horizon=10)
    out = tmp_path / "run"
    line = one_line_error(capsys, main(["train", str(config), "--out", str(out), "--no-progress"]), phrase)
    assert "Fix: " in line
    assert not out.exists()


# --- 4. the other commands' arguments --------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "phrase"),
    [
        (["--json", "{dir}"], "--json '{dir}' is a directory; give a file name, e.g. '{dir}/result.json'"),
        (["--json", "{dir}/"], "--json '{dir}/' is a directory; give a file name"),
        (["--json", "{file}/result.json"], "is a file, not a directory"),
        (["--lr", "nan"], "--lr: got nan, expected a finite number > 0"),
        (["--later-lr", "inf"], "--later-lr: got inf, expected a finite number > 0"),
        (["--lr", "-1"], "--lr: got -1.0, expected a finite number > 0"),
        (["--seed", "-1"], "--seed: got -1, expected an integer from 0 to 4294967295"),
        (["--tasks", "0"], "need --tasks >= 1 and --steps >= 0, got 0 and 3"),
        (["--shots", "0"], "need --shots >= 1, got 0"),
        (["--set", "inner.lr=0.5"], "evaluate --set takes env_kwargs.KEY=VALUE (the env the held-out"),
        (["--set", "bogus=1"], "bogus"),
        (["--set", "env_kwargs=3"], "evaluate --set takes env_kwargs.KEY=VALUE, got env_kwargs=3"),
        (["--set", "env_kwargs=3", "--set", "env_kwargs.x=1"], "env_kwargs was already set to 3 by another"),
        (["--set", "env_kwargs.goal=2"], "for 'metarl/Navigation2D-v0': unknown argument 'goal'; "),
    ],
)
def test_evaluate_refuses_bad_arguments_before_it_evaluates(
    run, tmp_path, capsys, monkeypatch, extra, phrase
):
    folder, afile = tmp_path / "results", tmp_path / "notes.txt"
    folder.mkdir()
    afile.write_text("mine")
    before = snapshot(run)

    def must_not_run(*args, **kwargs):
        raise AssertionError("the evaluation ran")

    monkeypatch.setattr(metarl.evaluation, "adapt_and_evaluate", must_not_run)
    fill = {"dir": str(folder), "file": str(afile)}
    code = main(["evaluate", str(run), "--tasks", "2", *[x.format(**fill) for x in extra]])
    one_line_error(capsys, code, phrase.format(**fill))
    assert snapshot(run) == before  # the run is untouched
    assert not list(folder.iterdir()) and afile.read_text() == "mine"  # nothing written


def test_evaluate_json_in_a_new_folder_leaves_only_the_json(run, tmp_path, capsys):
    out = tmp_path / "deep" / "eval.json"
    assert main(["evaluate", str(run), "--tasks", "2", "--steps", "1", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["steps"] == [0, 1]
    assert [p.name for p in out.parent.iterdir()] == ["eval.json"]  # no temporary file left


@pytest.mark.parametrize(
    ("out", "phrase"),
    [
        ("{dir}/", "--out '{dir}/' is a directory; give a file name, e.g. '{dir}/plot.png'"),
        ("{dir}", "--out '{dir}' is a directory; give a file name"),
        ("{dir}/curves", "--out '{dir}/curves' has no file extension; name a .png, .pdf, .svg"),
        ("{dir}/curves.xyz", "ends in '.xyz'; name a .png"),
        ("{file}/curves.png", "is a file, not a directory"),
    ],
)
def test_plot_needs_a_file_name_it_can_write(run, tmp_path, capsys, out, phrase):
    folder, afile = tmp_path / "plots", tmp_path / "notes.txt"
    folder.mkdir()
    afile.write_text("mine")
    fill = {"dir": str(folder), "file": str(afile)}
    one_line_error(capsys, main(["plot", str(run), "--out", out.format(**fill)]), phrase.format(**fill))
    assert not list(folder.iterdir()) and afile.read_text() == "mine"
    assert not list(tmp_path.glob("*.png"))  # not plots.png beside the folder either


@pytest.mark.parametrize(
    ("extra", "phrase"),
    [
        (["--out", "{file}"], "--out '{file}' is a file; name a directory for the run"),
        (["--out", "{file}/run"], "is a file, not a directory"),
        (["--num-envs", "0"], "--num-envs: got 0, expected a positive integer"),
        (["--timesteps", "0"], "--timesteps: got 0, expected a positive integer"),
    ],
)
def test_baseline_refuses_an_out_that_is_a_file_and_bad_sizes(tmp_path, capsys, monkeypatch, extra, phrase):
    monkeypatch.chdir(tmp_path)  # the default --out (runs/...) lands here
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    config = write_config(tmp_path)
    fill = {"file": str(afile)}
    code = main(["baseline", "pretrained", str(config), *[x.format(**fill) for x in extra]])
    one_line_error(capsys, code, phrase.format(**fill))
    assert afile.read_text() == "mine"
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        ("not json", "is not JSON (Expecting value"),
        ("[1, 2]", "is not an evaluate result (written by metarl evaluate --json): it holds a JSON list"),
        ("7", "it holds a JSON number, not an object"),
        (
            '{"steps": [0, 1]}',
            "is not an evaluate result (written by metarl evaluate --json): no mean_return, stderr",
        ),
        (
            '{"steps": [0, 1], "mean_return": ["a", "b"], "stderr": [0, 0]}',
            "'mean_return' must be a non-empty list of numbers",
        ),
        (
            '{"steps": [0.5], "mean_return": [1], "stderr": [0]}',
            "'steps' must be a non-empty list of integers",
        ),
        (
            '{"steps": [0, 1], "mean_return": [1, 2], "stderr": [0]}',
            "must have the same length, got 2, 2 and 1",
        ),
        (
            '{"steps": [0], "mean_return": [1], "stderr": [0], "method": 3}',
            "'method' must be a string, got 3",
        ),
        (
            '{"steps": [0], "mean_return": [1], "stderr": [0], "num_tasks": "x"}',
            "'num_tasks' must be an integer",
        ),
        (None, "is a directory, not an evaluate --json file"),
    ],
)
def test_compare_on_a_bad_json_names_the_file(tmp_path, capsys, content, phrase):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"steps": [0, 1], "mean_return": [1.0, 2.0], "stderr": [0.1, 0.1]}))
    bad = tmp_path / "bad.json"
    if content is None:
        bad.mkdir()
    else:
        bad.write_text(content)
    line = one_line_error(capsys, main(["compare", str(good), str(bad)]), phrase)
    assert repr(str(bad)) in line


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (
            ["iteration", "--config", "{config}", "--iterations", "0"],
            "--iterations: got 0, expected a positive integer",
        ),
        (["iteration", "--config", "{config}", "--json", "{dir}"], "--json '{dir}' is a directory"),
        (["sampler", "--seed", "-1"], "--seed: got -1, expected an integer from 0 to 4294967295"),
    ],
)
def test_bench_refuses_bad_arguments_before_it_runs(tmp_path, capsys, args, phrase):
    fill = {"config": str(write_config(tmp_path)), "dir": str(tmp_path)}
    one_line_error(capsys, main(["bench", *[x.format(**fill) for x in args]]), phrase.format(**fill))


def test_bench_sampler_keeps_its_figures_when_a_part_runs_out_of_memory(tmp_path, capsys, monkeypatch):
    make = metarl.bench.make_vector_env

    def no_fork(env_id, num_envs, horizon, backend="auto", **kwargs):
        if backend == "async":  # what AsyncVectorEnv's fork does with 5000 envs in the parent
            raise OSError(errno.ENOMEM, "Cannot allocate memory")
        return make(env_id, num_envs, horizon, backend=backend, **kwargs)

    monkeypatch.setattr(metarl.bench, "make_vector_env", no_fork)
    out = tmp_path / "sampler.json"
    args = ["bench", "sampler", "--num-envs", "2", "--async-envs", "2", "--steps", "2", "--rounds", "1"]
    code = main([*args, "--json", str(out)])
    printed = capsys.readouterr()
    assert code == 2 and "Traceback" not in printed.err
    assert printed.err.strip().splitlines() == [
        "metarl: error: bench: (c) AsyncVectorEnv, 2 processes failed: OSError: [Errno 12] Cannot allocate "
        "memory (the figures that were measured are printed above)"
    ]
    assert "(a) batched engine, 2 envs" in printed.out and "(b) SyncVectorEnv, 2 envs" in printed.out
    assert "(c) AsyncVectorEnv, 2 processes" in printed.out and "failed" in printed.out
    result = json.loads(out.read_text())  # what was measured is kept
    assert result["batched_steps_per_s"] > 0 and result["sync_steps_per_s"] > 0
    assert result["physics_limit_steps_per_s"] > 0 and "async_steps_per_s" not in result
    assert result["failed"] == {
        "(c) AsyncVectorEnv, 2 processes": "OSError: [Errno 12] Cannot allocate memory"
    }
    assert "batched_over_async" not in result and result["batched_over_sync"] > 0

"""The Python API: every learner through learn / save / load / adapt / predict / evaluate, the
same learner from Python and from YAML, adaptation that helps, and one-line misuse errors."""

from __future__ import annotations

import runpy
import sys

import numpy as np
import pytest
import torch
import yaml

import metarl
from metarl.config import load_config
from metarl.errors import ConfigError, MetarlError, TaskProtocolError
from metarl.learners.registry import learners
from metarl.trainer import learner_from_config

NAV = {"meta_batch_size": 3, "episodes_per_task": 2, "horizon": 12, "hidden_sizes": [8], "seed": 0}
SIN = {"meta_batch_size": 4, "hidden_sizes": [8], "k_shot": 5, "k_query": 5, "seed": 0}
RL = {"MAMLTRPO": {}, "FOMAML": {"outer_optimizer": "adam"}, "Reptile": {"inner_steps": 2}, "ProMP": {}}
SUPERVISED = {
    "MAML": {},
    "FOMAML": {},
    "Reptile": {"inner_steps": 2},
    "IMAML": {"inner_steps": 3},
    "Pretrained": {},
}


def _same_parameters(a: metarl.Learner, b: metarl.Learner) -> bool:
    sa, sb = a.policy.state_dict(), b.policy.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("name", RL)
def test_the_readme_snippet_runs_for_every_rl_learner(tmp_path, name):
    learner = getattr(metarl, name)("metarl/Navigation2D-v0", device="cpu", **NAV, **RL[name])
    theta = {k: v.clone() for k, v in learner.policy.state_dict().items()}
    seen = []
    assert (
        learner.learn(iterations=2, log_dir=tmp_path / "run", callback=lambda lr, m: seen.append(m))
        is learner
    )
    assert len(seen) == 2 and all("meta/accepted" in m for m in seen)
    assert any(not torch.equal(theta[k], v) for k, v in learner.policy.state_dict().items())
    assert (tmp_path / "run" / "checkpoint.pt").exists() and (tmp_path / "run" / "config.yaml").exists()
    learner.save(tmp_path / "model.pt")
    learner.close()

    loaded = metarl.load(tmp_path / "model.pt")
    assert type(loaded) is type(learner) and loaded.iteration == 2 and _same_parameters(loaded, learner)
    task = loaded.env.unwrapped.sample_tasks(1, np.random.default_rng(3))[0]
    adapted = loaded.adapt(task, steps=1)
    obs = np.zeros(2, dtype=np.float32)
    action = adapted.predict(obs)
    assert action.shape == (2,) and np.all(np.isfinite(action))
    assert adapted.predict(np.zeros((5, 2))).shape == (5, 2)
    assert not np.array_equal(action, loaded.predict(obs))  # the step changed the policy
    result = metarl.evaluate(loaded, num_tasks=2, steps=1, seed=0)
    assert result["method"] == RL[name].get("algorithm", loaded.algorithm) and len(result["mean_return"]) == 2
    # a run directory loads too, and continues in place
    again = metarl.load(tmp_path / "run")
    again.learn(1, log_dir=tmp_path / "run")
    assert metarl.load(tmp_path / "run").iteration == 3


@pytest.mark.parametrize("name", SUPERVISED)
def test_every_supervised_learner_learns_saves_loads_adapts_and_evaluates(tmp_path, name):
    learner = getattr(metarl.supervised, name)("supervised/Sinusoid", **SIN, **SUPERVISED[name])
    learner.learn(iterations=3)
    assert np.isfinite(learner.metrics["loss/post_adaptation"])
    learner.save(tmp_path / "model.pt")
    loaded = metarl.load(tmp_path / "model.pt")
    assert type(loaded) is type(learner) and _same_parameters(loaded, learner)
    task = metarl.supervised.SinusoidTasks().sample_tasks(1, np.random.default_rng(0))[0]
    y = loaded.adapt(task, steps=2).predict(np.linspace(-5, 5, 7)[:, None])
    assert y.shape == (7, 1) and np.all(np.isfinite(y))
    result = metarl.evaluate(loaded, num_tasks=5, steps=2)
    assert result["method"] == learner.algorithm and len(result["mean_mse"]) == 3


def test_imaml_logs_how_well_its_inner_problem_was_solved():
    few = metarl.IMAML("supervised/Sinusoid", **SIN, inner_steps=1).learn(1).metrics["imaml/inner_residual"]
    many = metarl.IMAML("supervised/Sinusoid", **SIN, inner_steps=50).learn(1).metrics
    assert many["imaml/inner_residual"] < few
    # The start (φ = θ, the same tasks as the 50-step run) is the norm the steps reduce.
    assert many["imaml/inner_residual"] < many["imaml/inner_residual_start"]


def test_a_few_shot_classification_family_object_trains_with_the_cross_entropy_loss():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(200) % 10
    features = torch.randn(200, 3, generator=g) + labels[:, None].float()
    family = metarl.supervised.NWayKShot(features, labels, n_way=3, k_shot=2, k_query=2)
    learner = metarl.supervised.MAML(family, meta_batch_size=4, hidden_sizes=[8], k_shot=2, k_query=2)
    learner.learn(2)
    assert learner.config.env == "supervised/NWayKShot" and np.isfinite(
        learner.metrics["loss/post_adaptation"]
    )
    assert "mean_loss" in learner.evaluate(num_tasks=3, steps=1)


@pytest.mark.parametrize(
    "name, kwargs, yaml_keys",
    [
        ("MAMLTRPO", {"inner_lr": 0.2, "max_kl": 0.02}, {"inner": {"lr": 0.2}, "trpo": {"max_kl": 0.02}}),
        (
            "FOMAML",
            {"outer_optimizer": "adam", "outer_lr": 0.01},
            {"outer": {"optimizer": "adam", "lr": 0.01}},
        ),
        ("Reptile", {"epsilon": 0.3, "inner_steps": 2}, {"reptile": {"epsilon": 0.3}, "inner": {"steps": 2}}),
        ("ProMP", {"clip_eps": 0.2, "outer_steps": 2}, {"promp": {"clip_eps": 0.2}, "outer": {"steps": 2}}),
    ],
)
def test_a_learner_from_python_equals_the_one_from_its_yaml_config_after_two_iterations(
    tmp_path, name, kwargs, yaml_keys
):
    cls = getattr(metarl, name)
    python = cls("metarl/Navigation2D-v0", **NAV, **kwargs).learn(2)
    data = {
        "env": "metarl/Navigation2D-v0",
        "algorithm": cls.algorithm,
        "iterations": 2,
        **{k: v for k, v in NAV.items() if k != "hidden_sizes"},
        "policy": {"hidden_sizes": [8]},
        **yaml_keys,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    from_yaml = learner_from_config(load_config(path))
    from_yaml.learn(2)
    assert _same_parameters(python, from_yaml)


def _deterministic_return(policy: metarl.AdaptedPolicy, env, task, seeds=range(5)) -> float:
    env.unwrapped.set_task(task)
    total = 0.0
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        done = False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy.predict(obs))
            total += float(reward)
            done = terminated or truncated
    return total / len(seeds)


def test_adapting_the_published_navigation_policy_to_a_task_raises_its_return_there():
    learner = metarl.load("experiments/results/navigation_2d/maml.pt", device="cpu")
    tasks = learner.env.unwrapped.sample_tasks(3, np.random.default_rng(7))
    for task in tasks:
        before = _deterministic_return(learner.policy_for(task), learner.env, task)
        after = _deterministic_return(learner.adapt(task, steps=1, seed=0), learner.env, task)
        assert after > before + 1.0, (task, before, after)


@pytest.mark.parametrize(
    "call, error, words",
    [
        (
            lambda: metarl.MAMLTRPO("metarl/Navigation2D-v0", inner_lrr=0.1),
            ConfigError,
            ["unexpected keyword argument 'inner_lrr'", "did you mean 'inner_lr'?"],
        ),
        (
            lambda: metarl.MAMLTRPO("metarl/Navigation2D-v0", epsilon=0.1),
            ConfigError,
            ["unexpected keyword argument 'epsilon'", "it takes:", "max_kl"],
        ),
        (
            lambda: metarl.MAMLTRPO("metarl/Navigation2D-v0", inner_lr="fast"),
            ConfigError,
            ["MAMLTRPO argument 'inner_lr' must be a number, got 'fast'"],
        ),
        (
            lambda: metarl.MAMLTRPO("metarl/Navigation2D-v0", max_kl=-1),
            ConfigError,
            ["MAMLTRPO argument 'max_kl' must be a number > 0, got -1"],
        ),
        (
            lambda: metarl.Reptile("metarl/Navigation2D-v0", hidden_sizes=8),
            ConfigError,
            ["Reptile argument 'hidden_sizes' must be a list of int, got 8"],
        ),
        (
            lambda: metarl.MAMLTRPO("CartPole-v1"),
            TaskProtocolError,
            ["CartPole-v1", "does not follow the task protocol", "sample_tasks"],
        ),
        (lambda: metarl.MAMLTRPO("metarl/Navigation2D-v1"), metarl.EnvNotFoundError, ["Navigation2D-v1"]),
        (
            lambda: metarl.MAML("metarl/Navigation2D-v0"),
            ConfigError,
            [
                "MAML is a supervised learner and 'metarl/Navigation2D-v0' is an RL env",
                "MAMLTRPO, FOMAML, ProMP, Reptile",
            ],
        ),
    ],
)
def test_each_misuse_of_the_python_api_raises_one_clear_exception(call, error, words):
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_learn_and_save_refuse_bad_arguments_and_foreign_files(tmp_path):
    learner = metarl.MAMLTRPO("metarl/Navigation2D-v0", **NAV)
    with pytest.raises(ConfigError, match="learn: iterations must be an integer >= 1, got 0"):
        learner.learn(0)
    foreign = tmp_path / "notes.pt"
    foreign.write_text("mine")
    with pytest.raises(MetarlError, match="is not a metarl checkpoint; it is left as it is"):
        learner.save(foreign)
    assert foreign.read_text() == "mine"


def test_a_config_key_the_learner_does_not_take_is_an_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"algorithm": "reptile", "trpo": {"max_kl": 0.02}}))
    with pytest.raises(ConfigError, match=r"config key 'trpo.max_kl' is not used by reptile \(Reptile\)"):
        load_config(path)


def test_every_learner_is_registered_once_and_documents_its_keywords():
    classes = learners()
    assert len({(c.kind, c.algorithm) for c in classes}) == len(classes) == 9
    for cls in classes:
        names = cls.keywords()
        assert len(set(names.values())) == len(names)
        for name in names:
            assert f"    {name} (" in cls.__doc__, (cls.__name__, name)


def test_the_example_script_trains_adapts_and_evaluates(tmp_path, monkeypatch, capsys):
    argv = ["python_api.py", "--iterations", "2", "--meta-batch-size", "3", "--episodes", "2"]
    monkeypatch.setattr(sys, "argv", [*argv, "--out", str(tmp_path / "run")])
    runpy.run_path("experiments/python_api.py", run_name="__main__")
    out = capsys.readouterr().out
    assert "first action before adaptation" in out and "return after 2 steps" in out

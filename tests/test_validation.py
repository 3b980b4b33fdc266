"""Choosing best.pt on validation tasks: a fixed set of its own, scored as evaluate scores,
logged to TensorBoard, never perturbing training, and off (the training return) with every 0."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import metarl
from metarl.cli import main
from metarl.config import load_config
from metarl.errors import ConfigError
from metarl.learners.base import EVAL_STREAM
from metarl.learners.registry import learners
from metarl.trainer import Trainer
from tests.conftest import TINY, interrupt_at_iteration

NAV = {"meta_batch_size": 3, "episodes_per_task": 2, "horizon": 12, "hidden_sizes": [8], "device": "cpu"}


def _nav(**kwargs) -> metarl.MAMLTRPO:
    return metarl.MAMLTRPO("metarl/Navigation2D-v0", **{**NAV, "seed": 0, **kwargs})


def _scalars(run, tag: str) -> dict[int, float]:
    events = EventAccumulator(str(run))
    events.Reload()
    if tag not in events.Tags()["scalars"]:
        return {}
    return {e.step: e.value for e in events.Scalars(tag)}


def _best(run) -> dict:
    return torch.load(run / "best.pt", weights_only=True)


def test_validation_tasks_are_fixed_per_seed_and_disjoint_from_evaluates_held_out_tasks():
    learner = _nav(seed=3, validation_tasks=20)
    tasks = learner.validation_tasks()
    assert len(tasks) == 20 and len(set(tasks)) == 20
    learner.learn(2)  # the training RNG moves on; the validation tasks do not
    assert learner.validation_tasks() == tasks
    assert _nav(seed=3, validation_tasks=20).validation_tasks() == tasks  # a resumed run has them too
    assert not set(_nav(seed=4).validation_tasks()) & set(tasks)
    held_out = learner.evaluate(num_tasks=40, steps=0, seed=3)["tasks"]
    assert len(held_out) == 40 and not {repr(t) for t in tasks} & set(held_out)
    learner.close()

    sinusoid = metarl.supervised.MAML("supervised/Sinusoid", seed=3)
    valid = sinusoid.validation_tasks()
    evaluated = sinusoid.family.sample_tasks(40, np.random.default_rng([3, EVAL_STREAM]))
    assert valid == sinusoid.validation_tasks() and not {repr(t) for t in valid} & {
        repr(t) for t in evaluated
    }


def test_validating_scores_the_adapted_policy_the_same_way_every_time_and_leaves_training_alone():
    learner = _nav(validation_tasks=4)
    rng_state, gen_state = learner.rng.bit_generator.state, learner.generator.get_state()
    theta = {k: v.clone() for k, v in learner.policy.state_dict().items()}
    first = learner.validate()
    assert set(first) == {
        "validation/return_after_0_steps",
        "validation/return_after_1_steps",
        "validation/score",
    }
    assert first["validation/score"] == first["validation/return_after_1_steps"] < 0
    assert learner.validate() == first  # same tasks, same episodes: only θ moves the score
    assert learner.rng.bit_generator.state == rng_state
    assert torch.equal(learner.generator.get_state(), gen_state)
    assert all(torch.equal(v, learner.policy.state_dict()[k]) for k, v in theta.items())
    learner.learn(1)
    assert learner.validate() != first
    learner.close()

    # Training with validation reaches the parameters training without it reaches.
    on, off = _nav(validation_every=1, validation_tasks=4).learn(3), _nav(validation_every=0).learn(3)
    for name, value in off.policy.state_dict().items():
        assert torch.equal(value, on.policy.state_dict()[name]), name
    on.close()
    off.close()


def test_best_pt_follows_the_validation_score_not_the_training_return(tmp_path):
    keep = {"keep_last": 4}
    off = _nav(validation_every=0, **keep)
    training = {}
    off.learn(4, log_dir=tmp_path / "off", callback=lambda lr, m: training.update({lr.iteration: m}))
    off.close()
    returns = {i: m["return/post_adaptation"] for i, m in training.items()}
    best_training = max(returns, key=returns.get)
    # validation.every 0: today's rule, the best training return, and no validation scalars.
    assert _best(tmp_path / "off")["iteration"] == best_training
    assert not any("validation/score" in m for m in training.values())
    assert not _scalars(tmp_path / "off", "validation/score")

    # Validation scores that rank the iterations the other way round: the worst training
    # iteration validates best.
    scores = {i: -r for i, r in returns.items()}
    best_valid = max(scores, key=scores.get)
    assert best_valid != best_training
    on = _nav(validation_every=1, **keep)
    on.validate = lambda: {"validation/score": scores[on.iteration]}
    seen = {}
    on.learn(4, log_dir=tmp_path / "on", callback=lambda lr, m: seen.update({lr.iteration: m}))
    on.close()
    assert {i: m["return/post_adaptation"] for i, m in seen.items()} == returns  # the same training
    best = _best(tmp_path / "on")
    assert best["iteration"] == best_valid and best["best_return"] == scores[best_valid]
    kept = torch.load(tmp_path / "on" / f"checkpoint-{best_valid:06d}.pt", weights_only=True)
    for name, value in kept["policy"].items():
        assert torch.equal(best["policy"][name], value), name
    running = [max(scores[j] for j in range(1, i + 1)) for i in range(1, 5)]
    assert [seen[i]["validation/best"] for i in range(1, 5)] == running
    assert _scalars(tmp_path / "on", "validation/best") == pytest.approx(dict(enumerate(running, 1)))


def test_validation_runs_every_n_iterations_and_at_the_last_and_its_scalars_reach_tensorboard(tmp_path):
    run = tmp_path / "run"
    _nav(validation_every=2, validation_tasks=4).learn(5, log_dir=run).close()
    score = _scalars(run, "validation/score")
    assert sorted(score) == [2, 4, 5]
    assert _scalars(run, "validation/return_after_1_steps") == score
    assert sorted(_scalars(run, "validation/return_after_0_steps")) == [2, 4, 5]
    assert sorted(_scalars(run, "time/validation_s")) == [2, 4, 5]
    best = max(score, key=score.get)
    assert _best(run)["iteration"] == best
    assert _scalars(run, "validation/best")[5] == pytest.approx(score[best])
    assert sorted(_scalars(run, "return/post_adaptation")) == [1, 2, 3, 4, 5]


def test_a_run_stopped_before_its_first_validation_has_no_best_and_says_so(tmp_path, capsys):
    run = tmp_path / "run"
    _nav(validation_tasks=4).learn(3, log_dir=run, callback=lambda lr, m: False).close()  # stops at 1
    assert (run / "checkpoint.pt").exists() and not (run / "best.pt").exists()
    assert main(["evaluate", str(run), "--checkpoint", "best", "--tasks", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "has no best.pt yet" in err and "use the latest checkpoint" in err and len(err.splitlines()) == 1
    assert metarl.load(run).iteration == 1


def test_a_supervised_learner_validates_by_its_query_loss_after_adaptation(tmp_path):
    learner = metarl.supervised.MAML(
        "supervised/Sinusoid", meta_batch_size=4, hidden_sizes=[8], inner_steps=2, validation_every=1, seed=0
    )
    seen = []
    learner.learn(2, log_dir=tmp_path / "run", callback=lambda lr, m: seen.append(m))
    for m in seen:
        losses = [m[f"validation/loss_after_{k}_steps"] for k in range(3)]
        assert m["validation/score"] == -losses[-1] and all(math.isfinite(x) for x in losses)
    scores = [m["validation/score"] for m in seen]
    assert _best(tmp_path / "run")["iteration"] == 1 + int(np.argmax(scores))
    assert sorted(_scalars(tmp_path / "run", "validation/loss_after_2_steps")) == [1, 2]


def test_a_run_interrupted_and_resumed_with_validation_equals_an_uninterrupted_one(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, "validation": {"every": 1, "tasks": 4}}))
    config = load_config(path, ["iterations=4"])
    full = Trainer(config, tmp_path / "full", progress=False)
    full.train()
    part = Trainer(config, tmp_path / "part", progress=False)
    interrupt_at_iteration(part, 3)
    with pytest.raises(KeyboardInterrupt):
        part.train()
    resumed = Trainer.resume(tmp_path / "part", progress=False)
    assert resumed.iteration == 2 and resumed.algorithm.best_return > -math.inf
    resumed.train()
    for name, value in full.policy.state_dict().items():
        assert torch.equal(value, resumed.policy.state_dict()[name]), name
    a, b = _best(tmp_path / "full"), _best(tmp_path / "part")
    assert a["iteration"] == b["iteration"] and a["best_return"] == b["best_return"]
    assert all(torch.equal(v, b["policy"][k]) for k, v in a["policy"].items())
    assert _scalars(tmp_path / "full", "validation/score") == _scalars(tmp_path / "part", "validation/score")
    assert sorted(_scalars(tmp_path / "part", "validation/score")) == [1, 2, 3, 4]


def test_a_best_score_of_the_other_kind_is_forgotten_on_load():
    learner = _nav(validation_every=0)
    learner.best_return = 5.0
    state = learner.state_dict()
    assert state["best_by"] == "training"
    other = _nav(validation_every=3)
    other.load_state_dict(state)  # a training return is no validation score
    assert other.best_return == -math.inf
    legacy = {k: v for k, v in state.items() if k != "best_by"}  # checkpoints from before validation
    same = _nav(validation_every=0)
    same.load_state_dict(legacy)
    assert same.best_return == 5.0


@pytest.mark.parametrize(
    "setting, message",
    [
        ("validation.every=-1", "'validation.every' must be an integer >= 0 (0 = no validation"),
        ("validation.tasks=0", "'validation.tasks' must be an integer >= 1, got 0"),
        ("validation.every=often", "'validation.every' must be an integer, got 'often'"),
    ],
)
def test_a_bad_validation_setting_is_one_line(tmp_path, capsys, setting, message):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    assert main(["train", str(path), "--out", str(tmp_path / "run"), "--set", setting, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    with pytest.raises(ConfigError, match="MAMLTRPO argument 'validation_tasks' must be an integer >= 1"):
        _nav(validation_tasks=0)


def test_the_validation_keys_are_in_every_learners_documentation():
    for cls in learners():
        assert "validation_every (validation.every; 10)" in cls.__doc__, cls.__name__
        assert "validation_tasks (validation.tasks; 20)" in cls.__doc__, cls.__name__


def test_a_run_resumed_in_the_same_process_is_read_after_its_earlier_part(tmp_path, monkeypatch):
    """Event files are read in name order: the second they were made in, then a per-process
    counter that sorts as text. With the earlier part's writer numbered 9 and the resumed one
    10, a resume within the same second used to be read first, and its purge dropped the
    earlier part's scalars."""
    from tensorboard.summary.writer import event_file_writer

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, "validation": {"every": 1, "tasks": 4}}))
    part = Trainer(load_config(path, ["iterations=4"]), tmp_path / "part", progress=False)
    interrupt_at_iteration(part, 3)
    monkeypatch.setattr(event_file_writer._global_uid, "_value", 9)
    with pytest.raises(KeyboardInterrupt):
        part.train()
    resumed = Trainer.resume(tmp_path / "part", progress=False)
    resumed.train()
    names = sorted(p.name for p in (tmp_path / "part").glob("events.out.tfevents.*"))
    assert [name.rsplit(".", 1)[1] for name in names] == ["9", "10"]  # the resumed part last
    assert sorted(_scalars(tmp_path / "part", "validation/score")) == [1, 2, 3, 4]


def test_eval_env_kwargs_score_validation_and_evaluate_in_their_env_and_leave_training_alone():
    # A tiny ant: scored before adapting, the survival bonus is all that tells the two envs apart.
    ant = {**NAV, "seed": 0, "validation_every": 1, "validation_tasks": 2}
    paper = metarl.MAMLTRPO("metarl/AntDir-v0", **ant)
    shaped = metarl.MAMLTRPO("metarl/AntDir-v0", eval_env_kwargs={"healthy_reward": 1.0}, **ant)
    assert shaped.config.scoring_env_kwargs() == {"healthy_reward": 1.0} and shaped.config.env_kwargs == {}
    metrics = [{}, {}]
    for learner, seen in zip((paper, shaped), metrics, strict=True):
        learner.learn(2, callback=lambda lr, m, seen=seen: seen.update({lr.iteration: m}))
    for name, value in paper.policy.state_dict().items():  # the same training
        assert torch.equal(value, shaped.policy.state_dict()[name]), name
    for i in (1, 2):
        assert metrics[0][i]["return/post_adaptation"] == metrics[1][i]["return/post_adaptation"]
        before = [m[i]["validation/return_after_0_steps"] for m in metrics]
        # the bonus's 1.0 - 0.05 per step: no ant falls in 12 steps
        assert before[1] - before[0] == pytest.approx(0.95 * NAV["horizon"], rel=1e-5)

    scored = shaped.evaluate(num_tasks=2, steps=0)
    assert scored["env_kwargs"] == {"healthy_reward": 1.0}
    same = paper.evaluate(num_tasks=2, steps=0, env_kwargs={"healthy_reward": 1.0})
    assert scored["mean_return"] == same["mean_return"]
    back = shaped.evaluate(num_tasks=2, steps=0, env_kwargs={"healthy_reward": 0.05})  # an explicit one wins
    assert back["env_kwargs"] == {"healthy_reward": 0.05}
    assert back["mean_return"] == pytest.approx(paper.evaluate(num_tasks=2, steps=0)["mean_return"])
    paper.close()
    shaped.close()

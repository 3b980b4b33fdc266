"""The random, pretrained and oracle baselines: built by `metarl baseline`, evaluated like MAML."""

import hashlib
import json

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from metarl_envs import GoalTask, VelocityTask

from metarl.cli import main
from metarl.config import config_from_dict
from metarl.learners.base import EVAL_STREAM
from metarl.policies import make_policy
from metarl.reference_methods import (
    PPO_FILE,
    TaskInObservation,
    _ppo_env,
    evaluate_oracle,
    load_oracle,
    policy_from_ppo,
    task_vector,
    train_ppo,
)
from metarl.sampling.local import Sampler
from tests.conftest import replace_after_loading

TINY = {
    "env": "metarl/Navigation2D-v0",
    "meta_batch_size": 3,
    "episodes_per_task": 2,
    "horizon": 12,
    "policy": {"hidden_sizes": [8, 8]},
}


def _mean_env_actions(policy, sampler, obs):
    """Our policy's mean action for ``obs`` as the env receives it (clipped), and the Box."""
    mean, _ = policy.dist(policy.params(), torch.as_tensor(obs))
    space = sampler.env.single_action_space
    return np.clip(sampler.env_actions(mean.detach().numpy()), space.low, space.high), space


@pytest.mark.parametrize("env_id", ["metarl/Navigation2D-v0", "metarl/HalfCheetahVel-v0"])
def test_ppo_actor_loads_into_our_policy_and_acts_like_sb3(env_id):
    config = config_from_dict({**TINY, "env": env_id})
    model = train_ppo(config, oracle=False, timesteps=256, num_envs=2)
    sampler = Sampler(env_id, 1, 1, 12, backend="sync")
    policy = make_policy(sampler.obs_dim, sampler.act_dim, False, config.policy.hidden_sizes)
    policy_from_ppo(model, policy, rescale=True)
    obs = np.random.default_rng(0).normal(size=(16, sampler.obs_dim)).astype(np.float32)
    sb3_actions, _ = model.predict(obs, deterministic=True)  # in PPO's [-1, 1] units
    ours, space = _mean_env_actions(policy, sampler, obs)
    scale, offset = (space.high - space.low) / 2, (space.high + space.low) / 2
    np.testing.assert_allclose(ours, sb3_actions * scale + offset, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(policy.log_std.detach(), model.policy.log_std.detach())
    sampler.close()


def test_ppo_in_env_units_is_converted_to_our_units():
    """An SB3 model trained on the raw Box (not by train_ppo) still maps onto our policy."""
    from stable_baselines3 import PPO

    config = config_from_dict(TINY)
    sampler = Sampler(TINY["env"], 1, 1, 12, backend="sync")
    env = gym.make(TINY["env"])
    kwargs = {"net_arch": [8, 8], "activation_fn": torch.nn.ReLU}
    model = PPO("MlpPolicy", env, policy_kwargs=kwargs, n_steps=64, batch_size=32, seed=0)
    model.learn(64)
    policy = make_policy(sampler.obs_dim, sampler.act_dim, False, config.policy.hidden_sizes)
    policy_from_ppo(model, policy, rescale=True)
    obs = np.random.default_rng(1).normal(size=(16, sampler.obs_dim)).astype(np.float32)
    sb3_actions, _ = model.predict(obs, deterministic=True)  # in the env's units (±0.1)
    ours, space = _mean_env_actions(policy, sampler, obs)
    np.testing.assert_allclose(ours, sb3_actions, rtol=1e-5, atol=1e-6)
    scale = torch.as_tensor((space.high - space.low) / 2, dtype=torch.float32)
    torch.testing.assert_close(policy.log_std.detach(), model.policy.log_std.detach() - torch.log(scale))
    sampler.close()
    env.close()


def test_oracle_sees_the_task():
    env = TaskInObservation(gym.make("metarl/Navigation2D-v0"))
    env.unwrapped.set_task(GoalTask((0.25, -0.5)))
    obs, _ = env.reset(seed=0)
    np.testing.assert_allclose(obs, [0.0, 0.0, 0.25, -0.5])
    assert env.observation_space.shape == (4,)
    np.testing.assert_array_equal(task_vector(VelocityTask(1.5)), [1.5])


def test_baselines_build_run_directories_that_evaluate_and_compare(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    results = []
    for kind in ("random", "pretrained", "oracle"):
        out = tmp_path / kind
        args = ["baseline", kind, str(config), "--out", str(out), "--timesteps", "256", "--num-envs", "2"]
        assert main(args) == 0
        if kind != "random":  # PPO's own curves land in the run directory
            assert "rollout/ep_rew_mean" in (out / "ppo" / "progress.csv").read_text()
            assert list((out / "ppo").glob("events.out.tfevents.*"))
        js = tmp_path / f"{kind}.json"
        assert main(["evaluate", str(out), "--tasks", "3", "--steps", "1", "--json", str(js)]) == 0
        result = json.loads(js.read_text())
        assert result["method"] == kind
        assert len(result["mean_return"]) == (1 if kind == "oracle" else 2)
        if kind == "oracle":  # sampled actions, like every other method, unless --deterministic
            assert result["deterministic"] is False
        # The record that tells whether the result is current covers PPO's policy file too.
        ppo = out / "ppo.zip"
        if kind == "random":
            assert not ppo.exists() and "ppo" not in result["checkpoint"]
        else:
            digest = hashlib.sha256(ppo.read_bytes()).hexdigest()
            assert result["checkpoint"]["ppo"] == {"file": str(ppo), "sha256": digest}
        results.append(str(js))
    capsys.readouterr()
    assert main(["compare", *results]) == 0
    out = capsys.readouterr().out
    assert "score 0" in out and "pretrained" in out
    assert main(["baseline", "random", str(config), "--out", str(tmp_path / "random")]) == 2  # exists


def test_evaluate_refuses_an_oracle_whose_ppo_zip_was_replaced_while_it_was_scored(
    tmp_path, capsys, monkeypatch
):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    run = tmp_path / "oracle"
    args = ["baseline", "oracle", str(config), "--out", str(run), "--timesteps", "256", "--num-envs", "2"]
    assert main(args) == 0
    import metarl.reference_methods

    # As a resumed PPO run writes its next ppo.zip while the oracle is scored.
    replace_after_loading(monkeypatch, metarl.reference_methods, "load_oracle", run / "ppo.zip")
    capsys.readouterr()
    out = tmp_path / "oracle.json"
    assert main(["evaluate", str(run), "--tasks", "2", "--json", str(out)]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the line saying what it scores
    assert error == f"metarl: error: {run / 'ppo.zip'} was replaced while it was loaded; run evaluate again"
    assert not out.exists()


def _oracle_model(config, goal_seeking: bool):
    """An oracle PPO model for navigation: untrained (its episodes run to the horizon), or with
    its actor set to step straight to the goal it observes, so that its episodes end at the goal
    after a number of steps that differs from task to task."""
    from stable_baselines3 import PPO

    hidden = config.policy.hidden_sizes
    kwargs = {"net_arch": {"pi": hidden, "vf": hidden}, "activation_fn": torch.nn.ReLU}
    model = PPO("MlpPolicy", _ppo_env(config, 0, oracle=True), policy_kwargs=kwargs, seed=0, device="cpu")
    if goal_seeking:  # observation [x, y, goal_x, goal_y]; unit actions are 10 x the env's
        first, second = model.policy.mlp_extractor.policy_net[0], model.policy.mlp_extractor.policy_net[2]
        with torch.no_grad():
            for layer in (first, second, model.policy.action_net):
                layer.weight.zero_()
                layer.bias.zero_()
            for axis in range(2):
                for unit, sign in ((2 * axis, 1.0), (2 * axis + 1, -1.0)):  # relu(±(goal - x))
                    first.weight[unit, axis], first.weight[unit, 2 + axis] = -sign, sign
                    second.weight[unit, unit] = 1.0
                    model.policy.action_net.weight[axis, unit] = 10.0 * sign
    return model


def _one_episode_at_a_time(run_dir, config, num_tasks, seed, deterministic):
    """The oracle's per-task returns as evaluate_oracle computed them before it ran in batch:
    one env, one episode and one predict at a time."""
    model, env = load_oracle(run_dir, config)
    rng = np.random.default_rng([seed, EVAL_STREAM])
    torch.manual_seed(seed)
    returns = []
    for task in env.unwrapped.sample_tasks(num_tasks, rng):
        env.unwrapped.set_task(task)
        total = 0.0
        for _ in range(config.episodes_per_task):
            obs, _ = env.reset(seed=int(rng.integers(2**31 - 1)))
            done = False
            while not done:
                action, _ = model.predict(obs, deterministic=deterministic)
                obs, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                done = terminated or truncated
        returns.append(total / config.episodes_per_task)
    env.close()
    return returns


@pytest.mark.parametrize("goal_seeking", [True, False], ids=["episodes-end-at-the-goal", "untrained"])
def test_the_oracle_evaluated_in_batch_returns_what_one_episode_at_a_time_returns(tmp_path, goal_seeking):
    config = config_from_dict({**TINY, "episodes_per_task": 3, "horizon": 30})
    _oracle_model(config, goal_seeking).save(tmp_path / PPO_FILE)
    result = evaluate_oracle(tmp_path, config, 6, seed=3, episodes_per_task=None, deterministic=True)
    batched = [r[0] for r in result["per_task_returns"]]
    expected = _one_episode_at_a_time(tmp_path, config, 6, seed=3, deterministic=True)
    np.testing.assert_allclose(batched, expected, rtol=1e-6)
    if goal_seeking:  # every episode reached its goal within a few steps
        assert all(-1.0 < r < 0 for r in batched)
    assert result["mean_return"] == [pytest.approx(np.mean(expected))]

    # Sampled actions: reproducible for a seed, and torch's global RNG is left as it was.
    before = torch.random.get_rng_state()
    sampled = evaluate_oracle(tmp_path, config, 6, seed=3, episodes_per_task=None)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert evaluate_oracle(tmp_path, config, 6, seed=3, episodes_per_task=None) == sampled
    assert sampled["per_task_returns"] != result["per_task_returns"] and sampled["tasks"] == result["tasks"]


# --- an interrupted PPO baseline continues from its last update ---------------------------------
def _interrupt_at_update(monkeypatch, number, seen):
    """Make PPO's ``number``-th update (counted in this process) raise KeyboardInterrupt, as
    Ctrl-C would; ``seen`` records each update's starting parameters and Adam step count."""
    from stable_baselines3 import PPO

    real_train = PPO.train

    def train(self):
        params = {k: v.detach().clone() for k, v in self.policy.state_dict().items()}
        adam = self.policy.optimizer.state_dict()["state"]
        seen.append((self.num_timesteps, params, int(adam[0]["step"]) if adam else 0))
        if len(seen) == number:
            raise KeyboardInterrupt
        return real_train(self)

    monkeypatch.setattr(PPO, "train", train)


def _csv_column(path, name):
    import csv

    rows = list(csv.DictReader(path.open()))
    return [float(row[name]) for row in rows]


def test_an_interrupted_ppo_baseline_resumes_from_its_last_update(tmp_path, capsys, monkeypatch):
    from metarl.checkpoint import load_checkpoint, load_sb3_training_state
    from metarl.reference_methods import PPO_RESUME

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    run = tmp_path / "pretrained"
    rollout = 2048 * 2  # SB3's n_steps per env x 2 envs
    seen = []
    _interrupt_at_update(monkeypatch, 3, seen)
    args = ["baseline", "pretrained", str(config), "--out", str(run), "--timesteps", str(4 * rollout)]
    assert main([*args, "--num-envs", "2"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"metarl: interrupted (Ctrl-C); PPO's state after {2 * rollout:,} of {4 * rollout:,} env steps "
        f"is kept; continue with: metarl baseline --resume {run}"
    ]
    assert not (run / "checkpoint.pt").exists()
    saved = load_checkpoint(run / PPO_RESUME)  # tensors and plain values only
    assert saved["ppo"]["num_timesteps"] == 2 * rollout and saved["num_envs"] == 2
    interrupted_at = seen[2]  # the parameters after two updates: what was saved
    for name, value in interrupted_at[1].items():
        torch.testing.assert_close(saved["ppo"]["policy"][name], value, rtol=0, atol=0)
    # SB3 logged the interrupted rollout before its update; the resumed run logs it again.
    assert _csv_column(run / "ppo" / "progress.csv", "time/total_timesteps") == [
        rollout,
        2 * rollout,
        3 * rollout,
    ]

    # A new run over it is refused, pointing at --resume; the state is untouched.
    assert main([*args, "--num-envs", "2"]) == 2
    line = capsys.readouterr().err.strip()
    assert "holds an unfinished pretrained baseline (8,192 of 16,384 PPO env steps)" in line
    assert f"metarl baseline --resume {run}" in line
    assert main(["baseline", "--resume", str(run), "--num-envs", "4"]) == 2
    assert "it takes no --num-envs" in capsys.readouterr().err
    assert main(["baseline", "--resume", str(run), "--timesteps", str(2 * rollout)]) == 2
    assert "--timesteps: got 8,192, expected more than the 8,192 PPO env steps run so far" in (
        capsys.readouterr().err
    )
    for command in (["evaluate", str(run)], ["train", "--resume", str(run)]):
        assert main(command) == 2
        line = capsys.readouterr().err
        assert "holds an unfinished PPO baseline (no checkpoint.pt yet)" in line
        assert f"finish it with: metarl baseline --resume {run}" in line

    monkeypatch.undo()
    seen.clear()
    _interrupt_at_update(monkeypatch, 99, seen)
    assert main(["baseline", "--resume", str(run)]) == 0
    assert f"finished the pretrained baseline (16,384 PPO env steps) in {run}" in capsys.readouterr().out
    # The continuation starts from the saved parameters and Adam state, and runs to the target.
    assert [steps for steps, _, _ in seen] == [3 * rollout, 4 * rollout]
    for name, value in interrupted_at[1].items():
        torch.testing.assert_close(seen[0][1][name], value, rtol=0, atol=0)
    assert seen[0][2] == interrupted_at[2] > 0
    assert _csv_column(run / "ppo" / "progress.csv", "time/total_timesteps") == [
        rollout * k for k in (1, 2, 3, 4)
    ]
    assert not (run / PPO_RESUME).exists()
    finished = load_checkpoint(run / "checkpoint.pt")
    assert finished["method"] == "pretrained" and finished["timesteps"] == 4 * rollout
    assert main(["evaluate", str(run), "--tasks", "2", "--steps", "1"]) == 0
    assert main(["baseline", "--resume", str(run)]) == 2
    assert "holds a finished pretrained baseline of 16,384 PPO env steps; extend it with --timesteps N" in (
        capsys.readouterr().err
    )

    # A finished run is extended from its ppo.zip: the same parameters and Adam state go on.
    model = load_sb3_training_state(run / PPO_FILE)
    before = (run / "checkpoint.pt").read_bytes()
    monkeypatch.undo()
    _interrupt_at_update(monkeypatch, 1, [])
    assert main(["baseline", "--resume", str(run), "--timesteps", str(5 * rollout)]) == 130
    assert capsys.readouterr().err.strip() == (
        f"metarl: interrupted (Ctrl-C) before PPO's first update; start again with: "
        f"metarl baseline --resume {run} --timesteps {5 * rollout}"
    )
    assert (run / "checkpoint.pt").read_bytes() == before  # the finished baseline is kept
    monkeypatch.undo()
    seen.clear()
    _interrupt_at_update(monkeypatch, 99, seen)
    assert main(["baseline", "--resume", str(run), "--timesteps", str(5 * rollout)]) == 0
    assert [steps for steps, _, _ in seen] == [5 * rollout]  # counted after each rollout
    for name, value in model["policy"].items():
        torch.testing.assert_close(seen[0][1][name], value, rtol=0, atol=0)
    assert seen[0][2] == int(model["optimizer"]["state"][0]["step"]) > interrupted_at[2]
    assert load_checkpoint(run / "checkpoint.pt")["timesteps"] == 5 * rollout
    assert _csv_column(run / "ppo" / "progress.csv", "time/total_timesteps") == [
        rollout * k for k in (1, 2, 3, 4, 5)
    ]


def test_an_interrupt_before_ppos_first_update_says_how_to_start_again(tmp_path, capsys, monkeypatch):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    run = tmp_path / "oracle"
    _interrupt_at_update(monkeypatch, 1, [])
    assert main(["baseline", "oracle", str(config), "--out", str(run), "--num-envs", "2"]) == 130
    assert capsys.readouterr().err.strip() == (
        f"metarl: interrupted (Ctrl-C) before PPO's first update; start again with: "
        f"metarl baseline oracle {config} --out {run} --force"
    )
    assert main(["baseline", "--resume", str(run)]) == 2
    assert "holds no PPO baseline to continue" in capsys.readouterr().err


# --- the config's ppo settings: hyperparameters, envs in processes, normalized observations ----
SMALL_PPO = {"n_steps": 32, "batch_size": 32, "n_epochs": 2}


def test_ppo_takes_its_settings_from_the_config_and_gives_each_env_its_own_tasks():
    from metarl.reference_methods import _ppo_vec_env

    settings = {**SMALL_PPO, "num_envs": 3, "learning_rate": 1e-3, "gamma": 0.9, "gae_lambda": 0.8}
    config = config_from_dict({**TINY, "ppo": {**settings, "clip_range": 0.1, "ent_coef": 0.01}})
    model = train_ppo(config, oracle=False, timesteps=96)
    assert (model.n_steps, model.batch_size, model.n_epochs, model.n_envs) == (32, 32, 2, 3)
    assert (model.learning_rate, model.gamma, model.gae_lambda, model.ent_coef) == (1e-3, 0.9, 0.8, 0.01)
    assert model.clip_range(1.0) == 0.1
    assert model.num_timesteps == 96 and model.get_vec_normalize_env() is None
    vec = _ppo_vec_env(config, False, seed=0, num_envs=3)
    vec.reset()
    goals = [tuple(env.unwrapped.get_task().goal) for env in vec.envs]
    assert len(set(goals)) == 3  # not one task stream repeated in every env
    vec.close()


@pytest.fixture
def restore_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("threads", [1, 2])
def test_ppo_updates_run_on_the_configs_torch_threads(restore_torch_threads, threads):
    torch.set_num_threads(3 - threads)
    config = config_from_dict({**TINY, "num_threads": threads, "ppo": {**SMALL_PPO, "num_envs": 1}})
    seen = []
    train_ppo(config, False, timesteps=96, on_update=lambda model: seen.append(torch.get_num_threads()))
    assert seen and set(seen) == {threads}


@pytest.mark.parametrize("env_id", ["metarl/Navigation2D-v0", "metarl/HalfCheetahVel-v0"])
def test_envs_in_subprocesses_or_a_batched_engine_train_the_same_policy_as_envs_in_turn(env_id):
    params = []
    for vec_env in ("dummy", "subprocess", "batched"):
        ppo = {**SMALL_PPO, "num_envs": 2, "vec_env": vec_env}
        config = config_from_dict({**TINY, "env": env_id, "ppo": ppo})
        model = train_ppo(config, oracle=True, timesteps=128, seed=5)
        params.append(model.policy.state_dict())
    # Different episodes would move the weights by far more than this; the tolerance only admits
    # the last-bit float32 differences once seen (4e-11 on one entry of a 6-element tensor, one CI run
    # in many), whose source was not found.
    for other in params[1:]:
        for name, value in params[0].items():
            torch.testing.assert_close(other[name], value, rtol=1e-5, atol=1e-8)


def test_normalized_observations_fold_exactly_into_the_pretrained_policy():
    from metarl.reference_methods import normalization_state, normalize_observations

    env_id = "metarl/HalfCheetahVel-v0"
    ppo = {**SMALL_PPO, "num_envs": 2, "normalize_observations": True, "normalize_rewards": True}
    config = config_from_dict({**TINY, "env": env_id, "ppo": ppo})
    model = train_ppo(config, oracle=False, timesteps=128)
    stats = normalization_state(model)
    assert float(stats["obs_count"]) > 128 and float(stats["ret_count"]) > 128
    assert stats["obs_var"].min() > 0 and stats["obs_mean"].abs().max() > 0.01
    sampler = Sampler(env_id, 1, 1, 12, backend="sync")
    policy = make_policy(sampler.obs_dim, sampler.act_dim, False, config.policy.hidden_sizes)
    policy_from_ppo(model, policy, rescale=True, normalization=stats)
    rng = np.random.default_rng(0)
    obs = (stats["obs_mean"].numpy() + 3 * rng.normal(size=(16, sampler.obs_dim))).astype(np.float32)
    sb3_actions, _ = model.predict(normalize_observations(obs, stats), deterministic=True)
    ours, space = _mean_env_actions(policy, sampler, obs)  # raw observations, as metarl samples them
    scale, offset = (space.high - space.low) / 2, (space.high + space.low) / 2
    np.testing.assert_allclose(ours, sb3_actions * scale + offset, rtol=1e-4, atol=1e-5)
    sampler.close()


def test_the_oracle_is_evaluated_on_the_observations_it_was_trained_on(tmp_path):
    """An oracle trained with normalized observations sees them normalized at evaluation: the
    goal-seeking oracle, rewritten to act on normalized observations, still reaches its goals."""
    config = config_from_dict({**TINY, "episodes_per_task": 3, "horizon": 30})
    model = _oracle_model(config, goal_seeking=True)
    mean = torch.tensor([0.1, -0.2, 0.3, 0.05], dtype=torch.float64)
    var = torch.tensor([0.04, 0.09, 0.25, 0.01], dtype=torch.float64)
    stats = {
        "obs_mean": mean,
        "obs_var": var,
        "obs_count": torch.tensor(100.0, dtype=torch.float64),
        "ret_mean": torch.zeros((), dtype=torch.float64),
        "ret_var": torch.ones((), dtype=torch.float64),
        "ret_count": torch.tensor(100.0, dtype=torch.float64),
        "normalize_observations": torch.tensor(True),
        "epsilon": torch.tensor(1e-8, dtype=torch.float64),
    }
    first = model.policy.mlp_extractor.policy_net[0]
    with torch.no_grad():  # W z + b' = W x + b for z = (x - mean) / std
        std = torch.sqrt(var + 1e-8)
        weight = first.weight.double()
        first.bias += (weight @ mean).float()
        first.weight.copy_((weight * std).float())
    model.save(tmp_path / PPO_FILE)
    state = {"method": "oracle", "iteration": 0, "config": config.to_dict(), "normalization": stats}
    torch.save(state, tmp_path / "checkpoint.pt")
    result = evaluate_oracle(tmp_path, config, 6, seed=3, episodes_per_task=None, deterministic=True)
    assert all(-1.0 < r[0] < 0 for r in result["per_task_returns"])  # every episode reached its goal
    (tmp_path / "checkpoint.pt").unlink()  # without the statistics it wanders off
    unnormalized = evaluate_oracle(tmp_path, config, 6, seed=3, episodes_per_task=None, deterministic=True)
    assert np.mean(unnormalized["mean_return"]) < np.mean(result["mean_return"]) - 1.0


def test_a_resumed_ppo_run_continues_with_the_saved_normalization(tmp_path, capsys, monkeypatch):
    from metarl.checkpoint import load_checkpoint
    from metarl.reference_methods import PPO_RESUME

    settings = {**SMALL_PPO, "num_envs": 2, "normalize_observations": True}
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "ppo": settings}))
    run = tmp_path / "oracle"
    _interrupt_at_update(monkeypatch, 3, [])
    assert main(["baseline", "oracle", str(config), "--out", str(run), "--timesteps", "320"]) == 130
    saved = load_checkpoint(run / PPO_RESUME)["ppo"]["normalization"]
    # VecNormalize's prior count, the 2 first observations, then two rollouts of 2 x 32 steps
    assert float(saved["obs_count"]) == pytest.approx(1e-4 + 2 + 128)
    monkeypatch.undo()
    from metarl.reference_methods import _restore_normalization

    restored = []
    real = _restore_normalization

    def spy(model, state):
        real(model, state)
        restored.append(float(model.get_vec_normalize_env().obs_rms.count))

    monkeypatch.setattr("metarl.reference_methods._restore_normalization", spy)
    assert main(["baseline", "--resume", str(run)]) == 0
    assert restored == [pytest.approx(float(saved["obs_count"]))]
    finished = load_checkpoint(run / "checkpoint.pt")["normalization"]  # + the resumed run's own
    assert float(finished["obs_count"]) == pytest.approx(float(saved["obs_count"]) + 2 + 192)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--tasks", "2"]) == 0


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            "ppo.vec_env=threads",
            "config key 'ppo.vec_env' must be one of dummy, subprocess, batched, got 'threads'",
        ),
        ("ppo.batch_size=9000", "must be at most ppo.n_steps * ppo.num_envs (2048 * 4 = 8192, one rollout)"),
        ("ppo.gamma=0", "config key 'ppo.gamma' must be a number in (0, 1], got 0"),
    ],
)
def test_bad_ppo_settings_are_one_line_errors(tmp_path, capsys, setting, message):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "run"
    assert main(["baseline", "oracle", str(config), "--out", str(out), "--set", setting]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_ppo_settings_belong_to_rl_configs_only():
    from metarl.config import ConfigError

    config_from_dict({**TINY, "ppo": {"n_steps": 512}})  # an RL config's baselines read them
    with pytest.raises(ConfigError, match="'ppo.n_steps' is not used by maml"):
        config_from_dict({"env": "supervised/Sinusoid", "algorithm": "maml", "ppo": {"n_steps": 512}})


def test_bench_ppo_splits_each_rollout_into_collecting_and_updating(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "ppo": {**SMALL_PPO, "num_envs": 2}}))
    js = tmp_path / "bench.json"
    args = ["bench", "ppo", "--config", str(config), "--iterations", "2", "--baseline", "pretrained"]
    assert main([*args, "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "pretrained PPO, 2 envs (dummy), rollouts of 64 env steps, mean of 2" in out
    assert "2 epochs x 2 minibatches of 32" in out
    r = json.loads(js.read_text())
    assert r["collect_s"] > 0 and r["update_s"] > 0 and r["ppo"]["n_steps"] == 32
    assert r["env_steps_per_s"] == pytest.approx(64 / (r["collect_s"] + r["update_s"]))
    assert not list(tmp_path.glob("runs*"))  # a benchmark writes no run
    sinusoid = tmp_path / "sinusoid.yaml"
    sinusoid.write_text(yaml.safe_dump({"env": "supervised/Sinusoid", "algorithm": "maml"}))
    assert main(["bench", "ppo", "--config", str(sinusoid)]) == 2
    assert "bench ppo times the PPO baselines of RL families" in capsys.readouterr().err


@pytest.mark.parametrize("oracle", [True, False], ids=["oracle", "pretrained"])
def test_ppo_envs_in_one_batched_engine_step_as_the_single_envs(oracle):
    """Each sub-env of ``ppo.vec_env: batched`` runs the episodes of a single env given the same
    tasks (its own stream, a new task per episode), reset seeds and actions; a finished episode
    is reset in the same step, its last observation in ``terminal_observation``."""
    from metarl.reference_methods import TASK_STREAM, _ppo_vec_env, _unit_actions

    env_id, horizon, n, seed = "metarl/HalfCheetahVel-v0", 5, 3, 11
    config = config_from_dict({**TINY, "env": env_id, "horizon": horizon, "ppo": {"vec_env": "batched"}})
    vec = _ppo_vec_env(config, oracle, seed, n)
    assert type(vec.venv.vector_env).__name__ == "HalfCheetahVelVectorEnv"  # the batched engine
    task_seeds = np.random.SeedSequence([seed, TASK_STREAM]).generate_state(n)
    twins = []
    for i in range(n):
        env = _unit_actions(gym.make(env_id, max_episode_steps=horizon), config)
        twins.append((TaskInObservation(env) if oracle else env, np.random.default_rng(int(task_seeds[i]))))

    def twin_reset(i, reset_seed):
        env, tasks = twins[i]
        env.unwrapped.set_task(env.unwrapped.sample_tasks(1, tasks)[0])
        return env.reset(seed=reset_seed)[0]

    obs = vec.reset()
    np.testing.assert_allclose(obs, np.stack([twin_reset(i, seed + i) for i in range(n)]), rtol=0, atol=1e-6)
    actions = np.random.default_rng(0).uniform(-1, 1, size=(2 * horizon + 2, n, 6)).astype(np.float32)
    ends = 0
    for step_actions in actions:
        vec.step_async(step_actions)
        obs, reward, done, infos = vec.step_wait()
        for i, (env, _) in enumerate(twins):
            expected, r, terminated, truncated, _ = env.step(step_actions[i])
            assert reward[i] == pytest.approx(r, rel=1e-6) and done[i] == (terminated or truncated)
            if done[i]:
                ends += 1
                np.testing.assert_allclose(infos[i]["terminal_observation"], expected, rtol=0, atol=1e-6)
                assert infos[i]["TimeLimit.truncated"] == (truncated and not terminated)
                assert "episode" in infos[i]  # SB3's episode statistics (VecMonitor)
                expected = twin_reset(i, None)  # the next task, and the env's own reset stream
            np.testing.assert_allclose(obs[i], expected, rtol=0, atol=1e-6)
    assert ends == 2 * n  # every sub-env finished two episodes, each with a task of its own
    vec.close()


def test_ppo_trains_on_envs_in_one_batched_engine(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "ppo": {**SMALL_PPO, "num_envs": 4, "vec_env": "batched"}}))
    run = tmp_path / "oracle"
    assert main(["baseline", "oracle", str(config), "--out", str(run), "--timesteps", "256"]) == 0
    steps = _csv_column(run / "ppo" / "progress.csv", "time/total_timesteps")
    assert steps == [128, 256]
    assert _csv_column(run / "ppo" / "progress.csv", "rollout/ep_len_mean")[-1] == 12  # TINY's horizon
    assert main(["evaluate", str(run), "--tasks", "2"]) == 0


def test_a_resumed_baseline_may_step_its_envs_otherwise_and_nothing_else(tmp_path, capsys, monkeypatch):
    from metarl.checkpoint import load_checkpoint

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "ppo": {**SMALL_PPO, "num_envs": 2}}))
    run = tmp_path / "pretrained"
    _interrupt_at_update(monkeypatch, 2, [])
    assert main(["baseline", "pretrained", str(config), "--out", str(run), "--timesteps", "192"]) == 130
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["baseline", "--resume", str(run), "--set", "ppo.n_steps=64"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "metarl: error: --set ppo.n_steps: a continued baseline can change only num_threads, "
        "ppo.vec_env, sampler.num_threads (the threads it runs on and how its envs are stepped); "
        "start a new baseline for it"
    )
    assert main(["baseline", "--resume", str(run), "--set", "ppo.vec_env=threads"]) == 2
    assert "config key 'ppo.vec_env' must be one of dummy, subprocess, batched" in capsys.readouterr().err
    args = [
        "baseline",
        "--resume",
        str(run),
        "--set",
        "ppo.vec_env=batched",
        "--set",
        "sampler.num_threads=1",
    ]
    assert main(args) == 0
    finished = load_checkpoint(run / "checkpoint.pt")
    assert finished["timesteps"] == 192 and finished["config"]["ppo"]["vec_env"] == "batched"
    assert _csv_column(run / "ppo" / "progress.csv", "time/total_timesteps") == [64, 128, 192]

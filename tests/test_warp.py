"""The MuJoCo Warp engine and sampler (``sampler.backend: warp``), on Warp's CPU device.

The single env is the specification: its batched C twin is bit-identical to it (test_batched.py),
so each Warp twin is checked against that twin. MuJoCo Warp computes in float32 and builds its
own contact frames (a pyramidal friction cone is not symmetric about the normal, so contact
forces differ from the C engine's from the first contact on): the formulas must agree to float32
precision from the same states, short trajectories closely, and returns in distribution.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

pytest.importorskip("warp", reason="MuJoCo Warp (the gpu extra) is not installed")
pytest.importorskip("mujoco_warp", reason="MuJoCo Warp (the gpu extra) is not installed")

from metarl_envs import WARP_ENTRY_POINTS, DirectionTask, GoalTask, VelocityTask  # noqa: E402
from metarl_envs.warp import WarpVectorEnv  # noqa: E402

from metarl.errors import SamplerError  # noqa: E402
from metarl.sampling.warp import WarpSampler  # noqa: E402

CHEETAH = "metarl/HalfCheetahVel-v0"
ANT_TASKS = {
    "metarl/AntVel-v0": [VelocityTask(v) for v in (0.2, 2.9, 1.1)],
    "metarl/AntDir-v0": [DirectionTask(d) for d in (-1, 1, 1)],
    "metarl/AntGoal-v0": [GoalTask(g) for g in ((2.5, -1.0), (0.0, 0.0), (-3.0, 3.0))],
}


def tasks_for(env_id: str, n: int) -> list:
    if env_id in ANT_TASKS:
        return ANT_TASKS[env_id][:n]
    if env_id == CHEETAH:
        return [VelocityTask(v) for v in (0.1, 1.9, 1.0)][:n]
    if env_id == "metarl/HalfCheetahDir-v0":
        return [DirectionTask(d) for d in (1, -1, -1)][:n]
    return gym.make(env_id).unwrapped.sample_tasks(n, np.random.default_rng(4))


def pair(env_id: str, tasks: list, horizon: int = 200, **kwargs):
    """The Warp twin and the C twin of ``env_id`` with the same tasks."""
    creator = gym.envs.registration.load_env_creator(WARP_ENTRY_POINTS[env_id])
    warp_env = creator(num_envs=len(tasks), max_episode_steps=horizon, device="cpu", **kwargs)
    c_env = gym.make_vec(
        env_id, num_envs=len(tasks), max_episode_steps=horizon, num_threads=1, **kwargs
    ).unwrapped
    assert isinstance(warp_env, WarpVectorEnv)
    warp_env.set_tasks(tasks)
    c_env.set_tasks(tasks)
    return warp_env, c_env


def put(tensor: torch.Tensor, array: np.ndarray) -> None:
    tensor[:] = torch.as_tensor(np.array(array).reshape(tensor.shape), dtype=torch.float32)


@pytest.mark.parametrize("env_id", sorted(WARP_ENTRY_POINTS))
def test_observation_reward_and_termination_from_the_same_states(env_id):
    # Each step of the C twin is replayed through the Warp twin's formulas: the state before and
    # after (qpos, qvel and the derived fields the family reads) is copied in, and the
    # observation, reward and termination must agree to float32 precision, task by task.
    kwargs = {"healthy_z_range": (0.3, 0.9)} if env_id in ANT_TASKS else {}  # ants fall: terminations
    tasks = tasks_for(env_id, 3)
    warp_env, c_env = pair(env_id, tasks, **kwargs)
    c_env.reset(seed=7)
    warp_env.reset(seed=7)
    fields = [f for f in ("xpos", "cfrc_ext") if hasattr(c_env, f)]
    rng = np.random.default_rng(0)
    terminations = 0
    for t in range(25):
        actions = rng.uniform(-1.5, 1.5, size=(len(tasks), c_env.single_action_space.shape[0]))
        for f in ["qpos", "qvel", *fields]:
            put(getattr(warp_env, f), getattr(c_env, f))
        before = warp_env._before_step()
        obs, reward, terminated, _, _ = c_env.step(actions)
        for f in ["qpos", "qvel", *fields]:
            put(getattr(warp_env, f), getattr(c_env, f))
        clipped = warp_env._actions(actions)
        np.testing.assert_allclose(warp_env._observe().numpy(), obs, rtol=1e-6, atol=1e-5, err_msg=f"obs {t}")
        np.testing.assert_allclose(
            warp_env._reward(clipped, before).numpy(), reward, rtol=1e-5, atol=1e-4, err_msg=f"reward {t}"
        )
        np.testing.assert_array_equal(warp_env._terminated().numpy(), terminated, err_msg=f"terminated {t}")
        terminations += int(terminated.sum())
        if terminated.any():  # restart the fallen ones, as the autoreset would
            c_env.reset(options={"reset_mask": terminated})
    if env_id in ANT_TASKS:
        assert terminations > 0
    warp_env.close()
    c_env.close()


@pytest.mark.parametrize(
    "env_id, steps, obs_atol, reward_atol",
    [(CHEETAH, 20, 0.1, 0.02), ("metarl/HopperRandParams-v0", 20, 1e-3, 1e-4)],
)
def test_trajectories_stay_close_to_the_c_engine(env_id, steps, obs_atol, reward_atol):
    # Measured: half-cheetah 0.014 (obs) and 0.002 (reward) after 20 steps of random actions,
    # the hopper (random physics, per-world parameters) 7e-6 and 5e-7: float32 and contact order.
    tasks = tasks_for(env_id, 3)
    warp_env, c_env = pair(env_id, tasks)
    obs_w, _ = warp_env.reset(seed=[3, 4, 5])
    obs_c, _ = c_env.reset(seed=[3, 4, 5])
    np.testing.assert_allclose(obs_w.numpy(), obs_c, atol=1e-6)  # the same reset noise
    rng = np.random.default_rng(1)
    for t in range(steps):
        actions = rng.uniform(-1, 1, size=(len(tasks), c_env.single_action_space.shape[0]))
        w, c = warp_env.step(actions), c_env.step(actions)
        np.testing.assert_allclose(w[0].numpy(), c[0], atol=obs_atol, err_msg=f"obs at step {t}")
        np.testing.assert_allclose(w[1].numpy(), c[1], atol=reward_atol, err_msg=f"reward at step {t}")
        np.testing.assert_array_equal(w[2].numpy(), c[2])
    warp_env.close()
    c_env.close()


def test_ant_agrees_until_the_first_contact():
    # The ant starts in the air: until a foot touches the floor the engines agree to float32.
    warp_env, c_env = pair("metarl/AntVel-v0", tasks_for("metarl/AntVel-v0", 3))
    obs_w, _ = warp_env.reset(seed=11)
    obs_c, _ = c_env.reset(seed=11)
    np.testing.assert_allclose(obs_w.numpy(), obs_c, atol=1e-6)
    actions = np.full((3, 8), 0.3)
    w, c = warp_env.step(actions), c_env.step(actions)
    assert not c_env.cfrc_ext.any()  # no contact yet
    np.testing.assert_allclose(w[0].numpy(), c[0], atol=1e-4)
    np.testing.assert_allclose(w[1].numpy(), c[1], atol=1e-5)
    warp_env.close()
    c_env.close()


def test_random_physics_per_world_constants_match_mj_setconst():
    env_id = "metarl/Walker2dRandParams-v0"
    tasks = tasks_for(env_id, 3)
    warp_env, _ = pair(env_id, tasks)
    single = gym.make(env_id).unwrapped
    for i, task in enumerate(tasks):
        single.set_task(task)  # mj_setConst on the single env's model
        for field in (
            "body_mass",
            "body_inertia",
            "dof_damping",
            "geom_friction",
            "body_subtreemass",
            "dof_invweight0",
        ):
            ours = warp_env._torch(getattr(warp_env.model, field)).numpy()[i]
            np.testing.assert_allclose(
                ours.reshape(-1), getattr(single.model, field).reshape(-1), rtol=2e-5, err_msg=field
            )
    warp_env.close()


def test_return_distribution_matches_the_c_engine():
    # 96 episodes of 40 steps of the same random actions per engine: the mean returns agree
    # within the noise of their difference (reset noise differs per episode).
    n, steps = 96, 40
    tasks = [VelocityTask(float(v)) for v in np.linspace(0, 2, n)]
    warp_env, c_env = pair(CHEETAH, tasks)
    warp_env.reset(seed=100)
    c_env.reset(seed=200)
    rng = np.random.default_rng(2)
    ret_w, ret_c = np.zeros(n), np.zeros(n)
    for _ in range(steps):
        actions = rng.uniform(-1, 1, size=(n, 6))
        ret_w += warp_env.step(actions)[1].numpy()
        ret_c += c_env.step(actions)[1]
    diff = ret_w - ret_c
    assert abs(diff.mean()) < 4 * diff.std(ddof=1) / np.sqrt(n) + 1e-3
    assert 0.5 < ret_w.std() / ret_c.std() < 2.0
    warp_env.close()
    c_env.close()


def test_next_step_autoreset_and_seeding():
    tasks = tasks_for(CHEETAH, 2)
    warp_env, c_env = pair(CHEETAH, tasks, horizon=4)
    first, _ = warp_env.reset(seed=[5, 6])
    c_env.reset(seed=[5, 6])
    actions = np.zeros((2, 6))
    for t in range(9):
        w, c = warp_env.step(actions), c_env.step(actions)
        np.testing.assert_array_equal(w[3].numpy(), c[3], err_msg=f"truncated at {t}")
        if t == 4:  # the step after truncation: a reset, reward 0, the generators' next draw
            np.testing.assert_allclose(w[0].numpy(), c[0], atol=1e-6)
            assert (w[1] == 0).all()
    # The same seeds give the same episodes, bit for bit.
    again, _ = warp_env.reset(seed=[5, 6])
    torch.testing.assert_close(again, first, rtol=0, atol=0)
    other, _ = warp_env.reset(seed=[8, 9])
    assert not torch.equal(other, first)
    warp_env.close()
    c_env.close()


def tiny_policy(sampler):
    from metarl.policies import make_policy

    torch.manual_seed(0)
    return make_policy(sampler.obs_dim, sampler.act_dim, False, (16,), "tanh")


def test_sampler_episodes_on_the_device_reproducible_and_per_task():
    sampler = WarpSampler(CHEETAH, num_tasks=3, episodes_per_task=2, horizon=6, device="cpu")
    sampler.set_tasks(tasks_for(CHEETAH, 3))
    policy = tiny_policy(sampler)
    params = {k: v.detach() for k, v in policy.params().items()}

    def sample(per_task=False, p=params):
        return sampler.sample(policy, p, np.random.default_rng(0), torch.Generator().manual_seed(0), per_task)

    a, b = sample(), sample()
    assert a.obs.shape == (6, 3, 2, 17) and a.rewards.shape == (6, 3, 2)
    assert a.obs.device == sampler.device and a.mask.all()
    for x, y in zip((a.obs, a.actions, a.rewards), (b.obs, b.actions, b.rewards), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    # Per-task parameters equal to θ for every task give the same episodes.
    per_task = {k: v.unsqueeze(0).expand(3, *v.shape).clone() for k, v in params.items()}
    c = sample(True, per_task)
    torch.testing.assert_close(c.rewards, a.rewards, rtol=1e-5, atol=1e-5)
    # The same reset seeds as the CPU sampler: the first observations agree to float32.
    from metarl.sampling.local import Sampler

    cpu = Sampler(CHEETAH, 3, 2, 6)
    cpu.set_tasks(tasks_for(CHEETAH, 3))
    d = cpu.sample(policy, params, np.random.default_rng(0), torch.Generator().manual_seed(0))
    torch.testing.assert_close(a.obs[0], d.obs[0], rtol=0, atol=1e-6)
    sampler.close()
    cpu.close()


def test_sampler_refuses_families_without_a_warp_twin():
    with pytest.raises(SamplerError, match="backend warp runs only the MuJoCo families"):
        WarpSampler("metarl/Navigation2D-v0", 2, 2, 5)


def test_missing_extra_is_one_line(monkeypatch):
    import builtins

    from metarl_envs.warp import WarpUnavailableError, import_warp

    real_import = builtins.__import__

    def no_warp(name, *args, **kwargs):
        if name == "mujoco_warp":
            raise ImportError("No module named 'mujoco_warp'", name="mujoco_warp")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_warp)
    with pytest.raises(WarpUnavailableError, match=r"pip install 'metarl\[gpu\]'"):
        import_warp()


def test_training_with_the_warp_backend(tmp_path):
    import metarl

    learner = metarl.MAMLTRPO(
        CHEETAH,
        meta_batch_size=2,
        episodes_per_task=2,
        horizon=8,
        hidden_sizes=(16,),
        sampler="warp",
        device="cpu",
        seed=0,
    )
    assert learner.sampler.backend == "warp"
    learner.learn(iterations=2, log_dir=tmp_path / "run", progress=False)
    assert learner.iteration == 2
    assert all(torch.isfinite(p).all() for p in learner.policy.parameters())
    learner.close()


def test_auto_keeps_the_cpu_engine_without_a_gpu():
    from metarl.config import config_from_dict
    from metarl.sampling import make_sampler

    config = config_from_dict(
        {"env": CHEETAH, "meta_batch_size": 2, "episodes_per_task": 1, "horizon": 5, "device": "cpu"}
    )
    sampler = make_sampler(config)
    assert sampler.backend == "vector_entry_point"
    sampler.close()


def test_bench_sampler_times_the_warp_sampler_beside_the_cpu_engine(tmp_path, capsys):
    import json

    from metarl.cli import main

    out = tmp_path / "bench.json"
    args = ["bench", "sampler", "--num-envs", "4", "--async-envs", "2", "--steps", "4", "--rounds", "1"]
    assert main([*args, "--backend", "warp", "--device", "cpu", "--warp-envs", "6", "--json", str(out)]) == 0
    assert "(h) metarl's MuJoCo Warp sampler, 6 worlds on cpu" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["warp_steps_per_s"] > 0
    assert result["warp_over_limit"] == result["warp_steps_per_s"] / result["physics_limit_steps_per_s"]


def test_bench_sampler_device_without_warp_is_a_one_line_error(capsys):
    from metarl.cli import main

    assert main(["bench", "sampler", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--backend warp" in err and len(err.splitlines()) == 1


def test_overflowed_contact_buffers_stop_sampling_in_one_line():
    # One contact slot per world is too few once the ants' legs touch the floor.
    sampler = WarpSampler("metarl/AntVel-v0", 2, 1, 30, device="cpu", nconmax=1, njmax=4)
    sampler.set_tasks(tasks_for("metarl/AntVel-v0", 2))
    policy = tiny_policy(sampler)
    with pytest.raises(
        SamplerError, match=r"nconmax=1 contacts, njmax=4 rows per world\); raise sampler"
    ) as info:
        sampler.sample(policy, policy.params(), np.random.default_rng(0), torch.Generator().manual_seed(0))
    assert "\n" not in str(info.value)
    sampler.close()


def test_resetting_some_worlds_leaves_the_others_derived_fields_alone():
    # forward() recomputes every world after a partial reset: the worlds not reset must keep the
    # xpos and cfrc_ext their last step left (as mj_step leaves them in a single MjData).
    warp_env, c_env = pair("metarl/AntVel-v0", tasks_for("metarl/AntVel-v0", 3))
    warp_env.reset(seed=[1, 2, 3])
    c_env.reset(seed=[1, 2, 3])
    for _ in range(4):
        warp_env.step(np.full((3, 8), 0.5))
    kept = {f: getattr(warp_env, f)[1:].clone() for f in ("xpos", "cfrc_ext", "qpos", "qvel")}
    obs, _ = warp_env.reset(seed=[9, None, None], options={"reset_mask": torch.tensor([True, False, False])})
    for f, before in kept.items():
        torch.testing.assert_close(getattr(warp_env, f)[1:], before, rtol=0, atol=0, msg=f)
    c_obs, _ = c_env.reset(seed=[9, None, None], options={"reset_mask": np.array([True, False, False])})
    np.testing.assert_allclose(obs[0].numpy(), c_obs[0], atol=1e-5)  # world 0: a fresh reset
    warp_env.close()
    c_env.close()


def test_evaluate_runs_a_warp_config_on_the_c_engine(tmp_path):
    import metarl

    learner = metarl.MAMLTRPO(
        CHEETAH,
        meta_batch_size=2,
        episodes_per_task=1,
        horizon=5,
        hidden_sizes=(8,),
        sampler="warp",
        device="cpu",
    )
    result = metarl.evaluate(learner, num_tasks=2, steps=1, seed=0)
    assert len(result["mean_return"]) == 2
    learner.close()


def test_deterministic_off_reaches_mujoco_warp_and_keeps_the_episodes():
    import mujoco_warp as mjw

    from metarl.config import ConfigError, config_from_dict, merge, parse_overrides
    from metarl.sampling import make_sampler

    base = {"env": CHEETAH, "meta_batch_size": 3, "episodes_per_task": 2, "horizon": 6, "device": "cpu"}
    samplers = {}
    for flag in (True, False):
        config = config_from_dict({**base, "sampler": {"backend": "warp", "deterministic": flag}})
        samplers[flag] = make_sampler(config)
        samplers[flag].set_tasks(tasks_for(CHEETAH, 3))
    assert samplers[True].env.model.opt.deterministic == mjw.DeterminismType.ALL
    assert int(samplers[False].env.model.opt.deterministic) == 0
    # Only the order of MuJoCo Warp's sums may change: the same seeds give the same episodes up
    # to float32 rounding.
    policy = tiny_policy(samplers[True])
    params = {k: v.detach() for k, v in policy.params().items()}
    a, b = (
        s.sample(policy, params, np.random.default_rng(0), torch.Generator().manual_seed(0))
        for s in samplers.values()
    )
    torch.testing.assert_close(b.obs, a.obs, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(b.rewards, a.rewards, rtol=1e-4, atol=1e-4)
    for s in samplers.values():
        s.close()
    with pytest.raises(ConfigError, match="sampler.deterministic"):
        config_from_dict(merge(base, parse_overrides(["sampler.deterministic=sometimes"])))

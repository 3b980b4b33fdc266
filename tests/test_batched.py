"""The batched MuJoCo engine against the single reference env: the same trajectories."""

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
from metarl_envs import DirectionTask, GoalTask, VelocityTask
from metarl_envs.batched import MujocoBatchVectorEnv
from metarl_envs.half_cheetah import HalfCheetahDirVectorEnv, HalfCheetahVelVectorEnv

from metarl import get_tasks, set_tasks
from metarl.sampling.local import Sampler

CASES = [
    ("metarl/HalfCheetahVel-v0", [VelocityTask(v) for v in (0.1, 0.7, 1.3, 1.9, 0.0)]),
    ("metarl/HalfCheetahDir-v0", [DirectionTask(d) for d in (1, -1, -1, 1, 1)]),
    ("metarl/AntVel-v0", [VelocityTask(v) for v in (0.2, 1.1, 2.9, 0.0, 1.7)]),
    ("metarl/AntDir-v0", [DirectionTask(d) for d in (-1, 1, 1, -1, 1)]),
    (
        "metarl/AntGoal-v0",
        [GoalTask(g) for g in ((2.5, -1.0), (0.0, 0.0), (-3.0, 3.0), (1.0, 0.5), (-0.2, -2.8))],
    ),
]
RAND_PARAMS = [
    "metarl/HalfCheetahRandParams-v0",
    "metarl/HopperRandParams-v0",
    "metarl/Walker2dRandParams-v0",
]
CASES += [
    (env_id, gym.make(env_id).unwrapped.sample_tasks(5, np.random.default_rng(4))) for env_id in RAND_PARAMS
]


def pair(env_id, tasks, horizon, num_threads=2, **kwargs):
    n = len(tasks)
    fast = gym.make_vec(env_id, num_envs=n, max_episode_steps=horizon, num_threads=num_threads, **kwargs)
    ref = gym.make_vec(env_id, num_envs=n, vectorization_mode="sync", max_episode_steps=horizon, **kwargs)
    assert isinstance(fast.unwrapped, MujocoBatchVectorEnv)
    set_tasks(fast, tasks)
    set_tasks(ref, tasks)
    return fast, ref


@pytest.mark.parametrize("env_id, tasks", CASES)
@pytest.mark.parametrize("seed", [[11, 12, 13, 14, 15], 3])
def test_batched_engine_matches_the_single_env_through_autoresets(env_id, tasks, seed):
    horizon, steps = 90, 230  # two time-limit autoresets per sub-env (ants may also fall over)
    fast, ref = pair(env_id, tasks, horizon)
    act_dim = fast.single_action_space.shape[0]
    obs_f, _ = fast.reset(seed=seed)
    obs_r, _ = ref.reset(seed=seed)
    assert obs_f.dtype == obs_r.dtype == np.float64
    np.testing.assert_allclose(obs_f, obs_r, rtol=0, atol=1e-9)
    rng = np.random.default_rng(0)
    resets = 0
    for t in range(steps):
        actions = rng.uniform(-1.5, 1.5, size=(len(tasks), act_dim))  # some outside the bounds
        f, r = fast.step(actions), ref.step(actions)
        np.testing.assert_allclose(f[0], r[0], rtol=0, atol=1e-9, err_msg=f"obs at step {t}")
        np.testing.assert_allclose(f[1], r[1], rtol=0, atol=1e-9, err_msg=f"reward at step {t}")
        np.testing.assert_array_equal(f[2], r[2], err_msg=f"terminated at step {t}")
        np.testing.assert_array_equal(f[3], r[3], err_msg=f"truncated at step {t}")
        resets += int((f[2] | f[3]).sum())
    assert resets >= 2 * len(tasks)
    fast.close()
    ref.close()


def test_ant_contact_forces_and_terminations_match_the_single_env():
    # A narrow healthy range makes the ants terminate (and autoreset) often; random actions at
    # the bounds keep the legs hitting the floor, so cfrc_ext (obs[27:]) is exercised.
    tasks = [VelocityTask(v) for v in (0.5, 1.0, 2.0)]
    fast, ref = pair("metarl/AntVel-v0", tasks, horizon=200, healthy_z_range=(0.3, 0.9))
    fast.reset(seed=5)
    ref.reset(seed=5)
    rng = np.random.default_rng(1)
    terminations, contact_steps = 0, 0
    for t in range(150):
        actions = rng.choice([-1.0, 1.0], size=(3, 8))
        f, r = fast.step(actions), ref.step(actions)
        for k, name in enumerate(["obs", "reward"]):
            np.testing.assert_allclose(f[k], r[k], rtol=0, atol=1e-9, err_msg=f"{name} at step {t}")
        np.testing.assert_array_equal(f[2], r[2])
        terminations += int(f[2].sum())
        contact_steps += int((np.abs(f[0][:, 27:]).sum(1) > 0).sum())
    assert terminations >= 3 and contact_steps >= 30


@pytest.mark.parametrize(
    "env_id, kwargs",
    [
        (
            "metarl/AntVel-v0",
            {"main_body": "torso", "contact_force_range": (-0.4, 0.6), "reset_noise_scale": 0.2},
        ),
        ("metarl/AntDir-v0", {"frame_skip": 2}),  # the ant configs' 0.02 s per action
        ("metarl/AntDir-v0", {"healthy_reward": 1.0}),  # PEARL's and ProMP's survival bonus
        ("metarl/AntGoal-v0", {"healthy_reward": 0.5}),
        ("metarl/HalfCheetahVel-v0", {"reset_noise_scale": 0.3}),
        ("metarl/HalfCheetahRandParams-v0", {"forward_reward_weight": -1.5, "ctrl_cost_weight": 0.3}),
        (
            "metarl/HopperRandParams-v0",
            {"healthy_z_range": (0.9, 2.0), "healthy_state_range": (-5.0, 5.0), "healthy_reward": 0.5},
        ),
        ("metarl/HopperRandParams-v0", {"healthy_z_range": (0.9, 2.0), "terminate_when_unhealthy": False}),
        ("metarl/Walker2dRandParams-v0", {"healthy_angle_range": (-0.5, 0.5), "reset_noise_scale": 0.05}),
        # Gymnasium's observation layout arguments
        ("metarl/AntDir-v0", {"include_cfrc_ext_in_observation": False, "frame_skip": 2}),
        ("metarl/AntGoal-v0", {"exclude_current_positions_from_observation": False}),
        ("metarl/HalfCheetahDir-v0", {"exclude_current_positions_from_observation": False}),
        ("metarl/HopperRandParams-v0", {"exclude_current_positions_from_observation": False}),
    ],
)
def test_the_single_envs_settings_reach_the_batched_twin(env_id, kwargs):
    # The twin reads reward weights, health ranges, reset noise and the observation's layout from
    # its single env.
    tasks = gym.make(env_id).unwrapped.sample_tasks(4, np.random.default_rng(4))
    fast, ref = pair(env_id, tasks, horizon=60, **kwargs)
    assert fast.single_observation_space == ref.single_observation_space
    obs = fast.reset(seed=5)[0]
    assert obs.shape == (4, *fast.single_observation_space.shape)
    np.testing.assert_allclose(obs, ref.reset(seed=5)[0], rtol=0, atol=1e-9)
    rng = np.random.default_rng(0)
    terminations = 0
    for t in range(100):
        actions = rng.uniform(-1.5, 1.5, size=(4, fast.single_action_space.shape[0]))
        f, r = fast.step(actions), ref.step(actions)
        for k, name in enumerate(["obs", "reward"]):
            np.testing.assert_allclose(f[k], r[k], rtol=0, atol=1e-9, err_msg=f"{name} at step {t}")
        np.testing.assert_array_equal(f[2], r[2])
        np.testing.assert_array_equal(f[3], r[3])
        terminations += int(f[2].sum())
    if kwargs.get("terminate_when_unhealthy") is False:
        assert terminations == 0
    fast.close()
    ref.close()


def test_rand_params_give_each_sub_env_its_own_physics_and_resetting_tasks_keeps_the_state():
    env_id = "metarl/HopperRandParams-v0"
    single = gym.make(env_id).unwrapped
    tasks = single.sample_tasks(3, np.random.default_rng(0))
    fast = gym.make_vec(env_id, num_envs=3, num_threads=1)
    set_tasks(fast, tasks)
    masses = fast.unwrapped.batch.expanded("body_mass")
    for i, task in enumerate(tasks):
        np.testing.assert_allclose(masses[i], single.nominal["body_mass"] * np.array(task.body_mass))
    assert len({tuple(m) for m in masses}) == 3
    # set_task keeps the state in force (the new physics applies from the next step)
    single.reset(seed=0)
    qpos = single.data.qpos.copy()
    single.set_task(tasks[1])
    np.testing.assert_array_equal(single.data.qpos, qpos)
    with pytest.raises(ValueError, match="PhysicsTask.body_mass has 2 entries, the model has 5"):
        single.set_task(dataclasses.replace(tasks[0], body_mass=(1.0, 1.0)))


def test_partial_reset_with_reset_mask_matches_sync():
    env_id, tasks = CASES[0]
    fast, ref = pair(env_id, tasks, horizon=50)
    for env in (fast, ref):
        env.reset(seed=0)
        for _ in range(5):
            env.step(np.full((len(tasks), 6), 0.5))
    mask = np.array([True, False, True, False, False])
    obs_f, _ = fast.reset(seed=[7] * 5, options={"reset_mask": mask})
    obs_r, _ = ref.reset(seed=[7] * 5, options={"reset_mask": mask})
    np.testing.assert_allclose(obs_f, obs_r, rtol=0, atol=1e-9)


def test_thread_count_does_not_change_the_trajectories():
    env_id, tasks = CASES[1]
    outs = []
    for threads in (1, 2):
        env = gym.make_vec(env_id, num_envs=5, max_episode_steps=200, num_threads=threads)
        set_tasks(env, tasks)
        env.reset(seed=1)
        for _ in range(20):
            obs, *_ = env.step(np.full((5, 6), 0.3))
        outs.append(obs)
    np.testing.assert_array_equal(*outs)


def test_each_sub_env_keeps_its_own_task_and_bad_tasks_are_refused():
    env = HalfCheetahVelVectorEnv(num_envs=2)
    tasks = [VelocityTask(0.5), VelocityTask(1.5)]
    set_tasks(env, tasks)
    assert get_tasks(env) == tasks
    with pytest.raises(TypeError, match="expects a VelocityTask"):
        env.set_tasks([VelocityTask(0.5), DirectionTask(1)])
    with pytest.raises(ValueError, match="got 1 tasks for 2 envs"):
        HalfCheetahDirVectorEnv(num_envs=2).set_tasks([DirectionTask(1)])


def test_sampler_picks_the_batched_engine_and_falls_back_to_sync_for_other_envs(tmp_path):
    cheetah = Sampler("metarl/HalfCheetahVel-v0", num_tasks=2, episodes_per_task=2, horizon=5)
    assert cheetah.backend == "vector_entry_point"
    assert isinstance(cheetah.env.unwrapped, HalfCheetahVelVectorEnv)
    cheetah.close()
    forced = Sampler("metarl/HalfCheetahVel-v0", 2, 2, 5, backend="sync")
    assert type(forced.env).__name__ == "SyncVectorEnv"
    forced.close()


def test_async_sampler_draws_tasks_in_this_process():
    sampler = Sampler("metarl/HalfCheetahDir-v0", 2, 1, 5, backend="async")
    try:
        a = sampler.sample_tasks(4, np.random.default_rng(0))
        b = sampler.sample_tasks(4, np.random.default_rng(0))
        assert a == b and all(isinstance(t, DirectionTask) for t in a)
        sampler.set_tasks(a[:2])
        assert get_tasks(sampler.env) == [a[0], a[1]]
    finally:
        sampler.close()


def test_policy_actions_are_mapped_from_unit_box_onto_the_action_bounds():
    nav = Sampler("metarl/Navigation2D-v0", 1, 1, 5)
    np.testing.assert_allclose(nav.env_actions(np.array([[1.0, -0.5]])), [[0.1, -0.05]], rtol=1e-6)
    raw = Sampler("metarl/Navigation2D-v0", 1, 1, 5, rescale_actions=False)
    np.testing.assert_array_equal(raw.env_actions(np.array([[1.0, -0.5]])), [[1.0, -0.5]])
    cheetah = Sampler("metarl/HalfCheetahVel-v0", 1, 1, 5)
    a = np.random.default_rng(0).normal(size=(1, 6))
    np.testing.assert_array_equal(cheetah.env_actions(a), a)  # [-1, 1] bounds: exactly the identity
    for s in (nav, raw, cheetah):
        s.close()

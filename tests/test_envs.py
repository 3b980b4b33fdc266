"""Task families: Gymnasium's checker, seeding, task sampling, set_tasks, the vector twin."""

import pickle

import gymnasium as gym
import metarl_envs
import numpy as np
import pytest
from metarl_envs import DirectionTask, GoalTask, VelocityTask

import metarl
from metarl import TaskProtocolError, check_task_env, get_tasks, set_tasks

FAMILIES = sorted(metarl_envs.FAMILIES)


@pytest.mark.parametrize("env_id", FAMILIES)
def test_family_passes_gymnasium_check_env_and_the_task_protocol(env_id):
    env = gym.make(env_id)
    gym.utils.env_checker.check_env(env.unwrapped, skip_render_check=True)
    check_task_env(env)
    env.close()


@pytest.mark.parametrize("env_id", FAMILIES)
def test_seeded_reset_and_rollout_are_deterministic(env_id):
    def rollout(seed):
        env = gym.make(env_id)
        task = env.unwrapped.sample_tasks(1, np.random.default_rng(7))[0]
        env.unwrapped.set_task(task)
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        trace = [obs]
        for _ in range(20):
            obs, reward, *_ = env.step(env.action_space.sample())
            trace += [obs, np.array([reward])]
        env.close()
        return np.concatenate([np.ravel(x) for x in trace])

    np.testing.assert_array_equal(rollout(3), rollout(3))
    if "Navigation" not in env_id:  # MuJoCo families: reset noise depends on the seed
        assert not np.array_equal(rollout(3), rollout(4))


@pytest.mark.parametrize("env_id", FAMILIES)
def test_sample_tasks_is_reproducible_and_picklable(env_id):
    env = gym.make(env_id).unwrapped
    a = env.sample_tasks(10, np.random.default_rng(0))
    b = env.sample_tasks(10, np.random.default_rng(0))
    c = env.sample_tasks(10, np.random.default_rng(1))
    assert a == b and a != c and len(a) == 10
    assert pickle.loads(pickle.dumps(a)) == a
    assert all(repr(t).startswith(type(t).__name__) for t in a)


def test_task_distributions_match_the_paper():
    rng = np.random.default_rng(0)
    nav = gym.make("metarl/Navigation2D-v0").unwrapped.sample_tasks(2000, rng)
    goals = np.array([t.goal for t in nav])
    assert goals.min() >= -0.5 and goals.max() <= 0.5 and abs(goals.mean()) < 0.02
    vel = gym.make("metarl/HalfCheetahVel-v0").unwrapped.sample_tasks(2000, rng)
    v = np.array([t.velocity for t in vel])
    assert v.min() >= 0 and v.max() <= 2 and abs(v.mean() - 1) < 0.05
    dirs = gym.make("metarl/HalfCheetahDir-v0").unwrapped.sample_tasks(2000, rng)
    d = np.array([t.direction for t in dirs])
    assert set(d) == {-1, 1} and abs(d.mean()) < 0.08
    ant = np.array([t.velocity for t in gym.make("metarl/AntVel-v0").unwrapped.sample_tasks(2000, rng)])
    assert ant.min() >= 0 and ant.max() <= 3 and abs(ant.mean() - 1.5) < 0.08
    ant_dirs = np.array([t.direction for t in gym.make("metarl/AntDir-v0").unwrapped.sample_tasks(2000, rng)])
    assert set(ant_dirs) == {-1, 1} and abs(ant_dirs.mean()) < 0.08
    ant_goals = np.array([t.goal for t in gym.make("metarl/AntGoal-v0").unwrapped.sample_tasks(2000, rng)])
    assert ant_goals.shape == (2000, 2) and ant_goals.min() >= -3 and ant_goals.max() <= 3
    assert abs(ant_goals.mean()) < 0.1
    hopper = gym.make("metarl/HopperRandParams-v0").unwrapped
    tasks = hopper.sample_tasks(500, rng)
    for field, size in [("body_mass", 5), ("body_inertia", 15), ("dof_damping", 6), ("geom_friction", 15)]:
        u = np.log(np.array([getattr(t, field) for t in tasks])) / np.log(1.5)
        assert u.shape == (500, size) and u.min() >= -3 and u.max() <= 3  # 1.5^u, u ~ U[-3, 3]
        assert abs(u.mean()) < 0.1 and abs(u.std() - 6 / np.sqrt(12)) < 0.05


def test_navigation_dynamics_reward_and_termination():
    env = gym.make("metarl/Navigation2D-v0")
    env.unwrapped.set_task(GoalTask(goal=(0.25, 0.0)))
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, [0.0, 0.0])
    obs, reward, terminated, _, _ = env.step(np.array([5.0, 0.0]))  # clipped to 0.1
    np.testing.assert_allclose(obs, [0.1, 0.0])
    assert reward == pytest.approx(-0.15) and not terminated
    env.step(np.array([0.1, 0.0]))
    _, reward, terminated, _, _ = env.step(np.array([0.05, 0.0]))
    assert terminated and reward == pytest.approx(0.0, abs=1e-6)
    assert env.spec.max_episode_steps == 100


def test_half_cheetah_rewards_follow_the_paper():
    for env_id, task in [
        ("metarl/HalfCheetahVel-v0", VelocityTask(1.5)),
        ("metarl/HalfCheetahDir-v0", DirectionTask(-1)),
    ]:
        env = gym.make(env_id)
        env.unwrapped.set_task(task)
        env.reset(seed=0)
        action = np.array([2.0, -0.5, 0.3, 0.0, 1.0, -3.0])
        _, reward, terminated, truncated, info = env.step(action)
        clipped = np.clip(action, -1, 1)
        ctrl = 0.05 * np.sum(clipped**2)
        v = info["x_velocity"]
        expected = -abs(v - 1.5) - ctrl if "Vel" in env_id else -v - ctrl
        assert reward == pytest.approx(expected)
        assert not terminated and not truncated
        assert env.spec.max_episode_steps == 200


def test_ant_rewards_follow_the_paper():
    action = np.array([2.0, -0.5, 0.3, 0.0, 1.0, -3.0, 0.7, -0.1])
    clipped = np.clip(action, -1, 1)
    for env_id, task in [
        ("metarl/AntVel-v0", VelocityTask(2.0)),
        ("metarl/AntDir-v0", DirectionTask(-1)),
        ("metarl/AntGoal-v0", GoalTask((2.0, -1.0))),
    ]:
        env = gym.make(env_id)
        env.unwrapped.set_task(task)
        env.reset(seed=0)
        for _ in range(30):  # long enough for the legs to touch the floor
            obs, reward, terminated, truncated, info = env.step(action)
        data = env.unwrapped.data
        forces = np.clip(data.cfrc_ext, -1, 1)
        costs = 0.005 * np.sum(clipped**2) + 5e-4 * np.sum(forces**2)
        assert np.sum(forces**2) > 0 and obs.shape == (105,)
        np.testing.assert_array_equal(obs[27:], forces[1:].ravel())
        v = info["x_velocity"]
        xy = data.body("torso").xpos[:2]
        expected = {
            "metarl/AntVel-v0": -abs(v - 2.0) + 1.0 + 0.05,
            "metarl/AntDir-v0": -v + 0.05,
            "metarl/AntGoal-v0": -(abs(xy[0] - 2.0) + abs(xy[1] + 1.0)) + 4.0,
        }[env_id] - costs
        assert reward == pytest.approx(expected)
        assert not truncated and env.spec.max_episode_steps == 200


@pytest.mark.parametrize("env_id", ["metarl/AntVel-v0", "metarl/AntDir-v0", "metarl/AntGoal-v0"])
@pytest.mark.parametrize("z_range, ending", [((0.2, 1.0), "truncated"), ((0.2, 0.6), "terminated")])
def test_ant_healthy_reward_sets_the_survival_bonus_of_every_step(env_id, z_range, ending):
    # With the torso's start (z = 0.75) above 0.6, the ant is unhealthy on its first step.
    default = {"metarl/AntVel-v0": 0.05, "metarl/AntDir-v0": 0.05, "metarl/AntGoal-v0": 0.0}[env_id]
    # The family's own bonus (healthy_reward not given) against 1.0.
    envs = [
        gym.make(env_id, healthy_z_range=z_range),
        gym.make(env_id, healthy_z_range=z_range, healthy_reward=1.0),
    ]
    for env in envs:
        env.reset(seed=3)
    rng = np.random.default_rng(0)
    done = False
    while not done:  # to the step that ends the episode, paid the bonus too
        action = rng.uniform(-1, 1, size=8)
        (_, plain, terminated, truncated, _), (_, bonus, *flags, _) = (e.step(action) for e in envs)
        assert flags == [terminated, truncated]
        assert bonus - plain == pytest.approx(1.0 - default, abs=1e-12)
        done = terminated or truncated
    assert {"truncated": truncated, "terminated": terminated}[ending]


@pytest.mark.parametrize(
    "env_id, kwargs, phrase",
    [
        ("metarl/AntDir-v0", {"forward_reward_weight": 2.0}, "forward_reward_weight=2.0 would not be used"),
        ("metarl/HalfCheetahVel-v0", {"forward_reward_weight": 2.0}, "forward_reward_weight=2.0 would not"),
        ("metarl/AntVel-v0", {"terminate_when_unhealthy": False}, "terminate_when_unhealthy=False is not"),
        (
            "metarl/AntDir-v0",
            {"healthy_reward": float("nan")},
            "healthy_reward must be a finite number, got nan",
        ),
        ("metarl/AntGoal-v0", {"healthy_reward": True}, "healthy_reward must be a finite number, got True"),
    ],
)
def test_family_arguments_it_would_ignore_are_refused(env_id, kwargs, phrase):
    with pytest.raises(ValueError, match=phrase):
        gym.make(env_id, **kwargs)


def test_ant_contact_forces_are_those_of_the_stepped_state():
    # cfrc_ext after a step equals mj_forward + mj_rnePostConstraint on the state before the
    # last substep (not Gymnasium's post-integration call).
    import mujoco

    env = gym.make("metarl/AntVel-v0").unwrapped
    env.reset(seed=1)
    model, data = env.model, env.data
    probe = mujoco.MjData(model)
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    state = np.empty(mujoco.mj_stateSize(model, spec))
    checked = 0
    for _ in range(60):
        action = env.np_random.uniform(-1, 1, size=8)
        env.do_simulation(action, env.frame_skip - 1)
        mujoco.mj_getState(model, data, state, spec)
        mujoco.mj_setState(model, probe, state, spec)
        probe.ctrl[:] = action
        mujoco.mj_forward(model, probe)
        mujoco.mj_rnePostConstraint(model, probe)
        env.do_simulation(action, 1)
        np.testing.assert_allclose(data.cfrc_ext, probe.cfrc_ext, rtol=0, atol=1e-9)
        checked += int(np.abs(probe.cfrc_ext).sum() > 0)
    assert checked > 10


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_set_tasks_gives_each_sub_env_its_own_task(mode):
    vec = gym.make_vec("metarl/HalfCheetahVel-v0", num_envs=3, vectorization_mode=mode)
    tasks = [VelocityTask(0.1), VelocityTask(1.0), VelocityTask(1.9)]
    set_tasks(vec, tasks)
    assert get_tasks(vec) == tasks
    # The task reaches the reward: identical states and actions, different rewards.
    vec.reset(seed=[0, 0, 0])
    _, rewards, *_ = vec.step(np.zeros((3, 6)))
    assert len(set(np.round(rewards, 9))) == 3
    vec.close()


def test_set_tasks_rejects_a_wrong_number_of_tasks():
    vec = gym.make_vec("metarl/Navigation2D-v0", num_envs=2)
    with pytest.raises(ValueError, match="got 3 tasks for a vector env of 2"):
        set_tasks(vec, [GoalTask((0.0, 0.0))] * 3)


def test_navigation_vector_env_equals_the_single_env_through_autoresets():
    n, horizon, steps = 4, 30, 75
    goals = [(0.1, 0.0), (0.3, -0.2), (-0.4, 0.45), (0.0, 0.2)]
    tasks = [GoalTask(g) for g in goals]
    fast = gym.make_vec("metarl/Navigation2D-v0", num_envs=n, max_episode_steps=horizon)
    ref = gym.make_vec(
        "metarl/Navigation2D-v0", num_envs=n, vectorization_mode="sync", max_episode_steps=horizon
    )
    assert type(fast).__name__ == "Navigation2DVectorEnv"
    set_tasks(fast, tasks)
    set_tasks(ref, tasks)
    rng = np.random.default_rng(0)
    outs = [env.reset(seed=list(range(n)))[0] for env in (fast, ref)]
    np.testing.assert_array_equal(*outs)
    terminations = 0
    for t in range(steps):
        actions = rng.uniform(-0.15, 0.15, size=(n, 2))
        actions[0] = [0.1, 0.0] if t % 5 == 0 else [-0.02, 0.0]  # env 0 reaches its goal often
        a, b = fast.step(actions), ref.step(actions)
        for x, y in zip(a[:4], b[:4], strict=True):
            np.testing.assert_allclose(x, y, rtol=0, atol=1e-7)
        terminations += int(a[2].sum())
    assert terminations >= 2  # went through terminations and truncations (75 > 2 × 30)


def test_check_task_env_names_each_protocol_mistake():
    class Base(gym.Env):
        observation_space = gym.spaces.Box(-1, 1, (1,), np.float32)
        action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

        def __init__(self):
            self.task = 0.5

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return np.zeros(1, np.float32), {}

        def step(self, action):
            return np.zeros(1, np.float32), -abs(float(action[0]) - self.task), False, False, {}

        def sample_tasks(self, n, rng):
            return [float(x) for x in rng.uniform(-1, 1, n)]

        def set_task(self, task):
            self.task = task

        def get_task(self):
            return self.task

    check_task_env(Base())  # the correct one passes

    class NoGetTask(Base):
        get_task = None

    class IgnoresRng(Base):
        def sample_tasks(self, n, rng):
            return [float(x) for x in np.random.uniform(-1, 1, n)]

    class RewardIgnoresTask(Base):
        def step(self, action):
            return np.zeros(1, np.float32), 0.0, False, False, {}

    class Unpicklable(Base):
        def sample_tasks(self, n, rng):
            return [lambda x=x: x for x in rng.uniform(-1, 1, n)]

        def set_task(self, task):
            self.task = task()

    class WrongSpace(Base):
        observation_space = gym.spaces.Box(-1, 1, (3,), np.float32)

    cases = [
        (WrongSpace, r"observations do not match the observation space \(reset\(\) returned shape \(1,\)"),
        (NoGetTask, "missing method get_task"),
        (IgnoresRng, "different tasks for the same seed"),
        (RewardIgnoresTask, "set_task does not change the reward"),
    ]
    for cls, message in cases:
        with pytest.raises(TaskProtocolError, match=message):
            check_task_env(cls())
    with pytest.raises(TaskProtocolError, match="is not picklable"):
        check_task_env(Unpicklable())


def test_make_env_lists_close_ids_for_a_typo():
    with pytest.raises(metarl.EnvNotFoundError, match="metarl/HalfCheetahVel-v0"):
        metarl.tasks.make_env("metarl/HalfCheetahVell-v0")


@pytest.mark.parametrize("env_id", ["metarl/Bandit-v0", "metarl/TabularMDP-v0"])
def test_discrete_numpy_twin_matches_the_single_env_through_autoresets(env_id):
    single = gym.make(env_id).unwrapped
    tasks = single.sample_tasks(4, np.random.default_rng(3))
    fast = gym.make_vec(env_id, num_envs=4, max_episode_steps=7)
    ref = gym.make_vec(env_id, num_envs=4, vectorization_mode="sync", max_episode_steps=7)
    assert type(fast).__name__.endswith("VectorEnv") and type(fast).__name__ != "SyncVectorEnv"
    for env in (fast, ref):
        set_tasks(env, tasks)
    obs_f, _ = fast.reset(seed=[5, 6, 7, 8])
    obs_r, _ = ref.reset(seed=[5, 6, 7, 8])
    np.testing.assert_array_equal(obs_f, obs_r)
    rng = np.random.default_rng(0)
    for t in range(30):  # four autoresets per sub-env
        actions = rng.integers(0, single.action_space.n, size=4)
        f, r = fast.step(actions), ref.step(actions)
        for k in range(4):
            np.testing.assert_allclose(f[k], r[k], rtol=0, atol=1e-12, err_msg=f"output {k} at step {t}")
    with pytest.raises(ValueError, match="expected 4 actions in"):
        fast.step(np.array([0, 1, 2, 99]))


@pytest.mark.parametrize("env_id", ["metarl/Navigation2D-v0", "metarl/Bandit-v0", "metarl/TabularMDP-v0"])
def test_numpy_twin_resets_the_sub_envs_of_reset_mask_as_sync_does(env_id):
    single = gym.make(env_id).unwrapped
    tasks = single.sample_tasks(4, np.random.default_rng(3))
    fast = gym.make_vec(env_id, num_envs=4, max_episode_steps=20)
    ref = gym.make_vec(env_id, num_envs=4, vectorization_mode="sync", max_episode_steps=20)
    for env in (fast, ref):
        set_tasks(env, tasks)
        env.reset(seed=[5, 6, 7, 8])
    rng = np.random.default_rng(0)
    actions = [
        rng.integers(0, single.action_space.n, size=4)
        if isinstance(single.action_space, gym.spaces.Discrete)
        else rng.uniform(-0.1, 0.1, size=(4, 2))
        for _ in range(12)
    ]
    for a in actions[:6]:
        fast.step(a)
        ref.step(a)
    mask = np.array([True, False, True, False])
    obs_f, _ = fast.reset(seed=[9, 10, 11, 12], options={"reset_mask": mask})
    obs_r, _ = ref.reset(seed=[9, 10, 11, 12], options={"reset_mask": mask})
    np.testing.assert_array_equal(obs_f, obs_r)
    for t, a in enumerate(actions[6:]):
        f, r = fast.step(a), ref.step(a)
        for k in range(4):
            np.testing.assert_allclose(f[k], r[k], rtol=0, atol=1e-12, err_msg=f"output {k} at step {t}")


def test_discrete_task_distributions():
    rng = np.random.default_rng(0)
    bandits = gym.make("metarl/Bandit-v0", num_arms=7).unwrapped.sample_tasks(1000, rng)
    means = np.array([t.means for t in bandits])
    assert (
        means.shape == (1000, 7) and means.min() >= 0 and means.max() <= 1 and abs(means.mean() - 0.5) < 0.02
    )
    mdp = gym.make("metarl/TabularMDP-v0").unwrapped
    tasks = mdp.sample_tasks(200, rng)
    p = np.array([t.transitions for t in tasks])
    r = np.array([t.rewards for t in tasks])
    assert p.shape == (200, 10, 5, 10) and r.shape == (200, 10, 5)
    np.testing.assert_allclose(p.sum(-1), 1.0)
    assert abs(p.mean() - 0.1) < 1e-9 and abs(p.var() - 9 / (100 * 11)) < 1e-3  # Dirichlet(1) over 10
    assert abs(r.mean() - 1) < 0.02 and abs(r.std() - 1) < 0.02
    with pytest.raises(TypeError, match="BanditTask with 7 means"):
        gym.make("metarl/Bandit-v0", num_arms=7).unwrapped.set_task(bandits[0].__class__((0.5, 0.5)))

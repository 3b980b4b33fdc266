"""The local sampler: episodes independent of thread count and sharding, spaces the policies
cannot act in refused, sizes that cannot fit in memory refused, unknown env ids explained."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml

from metarl.cli import main
from metarl.config import Config
from metarl.errors import EnvNotFoundError, SamplerError
from metarl.evaluation import adapt_and_evaluate
from metarl.policies import CategoricalMLPPolicy, GaussianMLPPolicy
from metarl.sampling.local import (
    MAX_ASYNC_ENVS,
    Sampler,
    available_memory,
    check_batch_memory,
    draw_randomness,
)
from metarl.tasks import unknown_env_message

CHEETAH = "metarl/HalfCheetahVel-v0"
GIB = 2**30


@pytest.fixture
def threads():
    """Restores torch's thread count after a test that changes it."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _sample_in_shards(env_id, policy, params, per_task, tasks, seeds, noise, shards, E, T):
    """The episodes of ``tasks`` sampled shard by shard (one Sampler per shard, with the
    shard's slices of seeds and noise, as RaySampler does), concatenated in task order."""
    parts, lo = [], 0
    for size in shards:
        hi = lo + size
        sampler = Sampler(env_id, size, E, T)
        sampler.set_tasks(tasks[lo:hi])
        shard_params = {k: v[lo:hi] for k, v in params.items()} if per_task else params
        parts.append(sampler.run(policy, shard_params, per_task, seeds[lo * E : hi * E], noise[:, lo:hi]))
        sampler.close()
        lo = hi
    assert len({p.obs.shape[0] for p in parts}) == 1  # these episodes all run to the horizon
    return [torch.cat([getattr(p, name) for p in parts], 1) for name in ("obs", "actions", "rewards", "mask")]


POLICIES = {
    # a learned log-std that is not 0, so that exp() of it is not exact
    CHEETAH: lambda: GaussianMLPPolicy(17, 6, [100, 100], init_log_std=-0.7),
    "metarl/TabularMDP-v0": lambda: CategoricalMLPPolicy(10, 5, [16], "tanh"),
}


@pytest.mark.parametrize("per_task", [False, True])
@pytest.mark.parametrize("E", [2, 5])
@pytest.mark.parametrize("env_id", sorted(POLICIES))
def test_episodes_are_identical_for_a_batch_and_its_shards_under_1_2_and_4_threads(
    threads, env_id, E, per_task
):
    # MKL's float32 products differ in the last bits between few rows and many, between
    # operands that start on a 16-byte boundary and operands that do not (a task's block in a
    # shard and in the whole batch), and (E=5) between one and two threads.
    N, T = 3, 20
    torch.manual_seed(0)
    policy = POLICIES[env_id]()
    params = {k: v.detach() for k, v in policy.params().items()}
    if per_task:  # three different adapted parameter sets
        params = {k: torch.stack([v + 0.1 * i for i in range(N)]) for k, v in params.items()}
    probe = Sampler(env_id, N, E, T)
    tasks = probe.sample_tasks(N, np.random.default_rng(0))
    probe.close()
    seeds, noise = draw_randomness(
        policy, N, E, T, np.random.default_rng(1), torch.Generator().manual_seed(2)
    )
    runs = {}
    for num_threads in (1, 2, 4):  # 4: MKL then splits even a one-task product over threads
        torch.set_num_threads(num_threads)
        for shards in ([3], [1, 2], [2, 1], [1, 1, 1]):
            runs[num_threads, tuple(shards)] = _sample_in_shards(
                env_id, policy, params, per_task, tasks, seeds, noise, shards, E, T
            )
        assert torch.get_num_threads() == num_threads  # sampling restores the thread count
    expected = runs[1, (3,)]
    assert expected[3].sum() == N * E * T
    for key, got in runs.items():
        for name, a, b in zip(("obs", "actions", "rewards", "mask"), got, expected, strict=True):
            assert torch.equal(a, b), (key, name)


# ---- spaces the policies cannot act in ------------------------------------------------------


class SpaceEnv(gym.Env):
    """A task env with the given spaces: a fixed observation, a reward that depends on the task."""

    def __init__(self, observation_space, action_space):
        self.observation_space, self.action_space = observation_space, action_space
        self.observation_space.seed(0)
        self._obs = self.observation_space.sample()
        self.task = 0.0

    def sample_tasks(self, n, rng):
        return [float(x) for x in rng.uniform(-1, 1, n)]

    def set_task(self, task):
        self.task = float(task)

    def get_task(self):
        return self.task

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return copy.deepcopy(self._obs), {}

    def step(self, action):
        return copy.deepcopy(self._obs), -abs(self.task), False, False, {}


BOX = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
SPACES = {
    "MultiDiscreteAct": (BOX, gym.spaces.MultiDiscrete([3, 4]), "action space MultiDiscrete([3 4])"),
    "Box2DAct": (BOX, gym.spaces.Box(-1.0, 1.0, (2, 3), np.float32), "action space Box(-1.0, 1.0, (2, 3)"),
    "IntBoxAct": (BOX, gym.spaces.Box(-1, 1, (2,), np.int64), "action space Box(-1, 1, (2,), int64)"),
    "DictObs": (gym.spaces.Dict({"pos": BOX}), BOX, "observation space Dict('pos': Box("),
    "TupleObs": (gym.spaces.Tuple((BOX, BOX)), gym.spaces.Discrete(3), "observation space Tuple(Box("),
    "MultiDiscreteObs": (gym.spaces.MultiDiscrete([3, 4]), BOX, "observation space MultiDiscrete([3 4])"),
}
ACCEPTED = {
    "DiscreteObs": (gym.spaces.Discrete(5), BOX),
    "MultiBinaryObs": (gym.spaces.MultiBinary(4), gym.spaces.Discrete(3, start=1)),
    "ImageObs": (gym.spaces.Box(0, 255, (4, 4, 3), np.uint8), BOX),
}
for _name, (_obs, _act, *_) in {**SPACES, **ACCEPTED}.items():
    if f"metarltest/{_name}-v0" not in gym.registry:
        gym.register(
            f"metarltest/{_name}-v0",
            entry_point=SpaceEnv,
            kwargs={"observation_space": _obs, "action_space": _act},
            max_episode_steps=5,
        )


@pytest.mark.parametrize("name", sorted(SPACES))
def test_train_refuses_a_space_the_policies_cannot_act_in_in_one_line(tmp_path, capsys, name):
    config = tmp_path / "spaces.yaml"
    config.write_text(
        yaml.safe_dump(
            {"env": f"metarltest/{name}-v0", "meta_batch_size": 2, "episodes_per_task": 2, "horizon": 5}
        )
    )
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"metarltest/{name}-v0: " in err and SPACES[name][2] in err and "is not supported" in err
    if "action space" in SPACES[name][2]:
        assert "one-dimensional Box of floats (Gaussian) or a Discrete space (categorical)" in err
    else:
        assert "must be a Box (any shape, flattened), Discrete or MultiBinary" in err


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_spaces_the_policies_can_act_in_are_sampled(name):
    sampler = Sampler(f"metarltest/{name}-v0", 2, 3, 5)
    obs_space = ACCEPTED[name][0]
    assert sampler.obs_dim == int(np.prod(obs_space.shape) if obs_space.shape else 1)
    if sampler.discrete:
        policy = CategoricalMLPPolicy(sampler.obs_dim, sampler.act_dim, [4])
    else:
        policy = GaussianMLPPolicy(sampler.obs_dim, sampler.act_dim, [4])
    sampler.set_tasks(sampler.sample_tasks(2, np.random.default_rng(0)))
    episodes = sampler.sample(policy, policy.params(), np.random.default_rng(1), torch.Generator())
    sampler.close()
    assert episodes.obs.shape == (5, 2, 3, sampler.obs_dim) and episodes.num_steps == 30


# ---- sizes that cannot fit in memory ---------------------------------------------------------


def test_check_batch_memory_counts_buffers_batches_and_sub_envs(monkeypatch):
    # 4 tasks × 4 episodes × 64 steps × 1 MiB per step = 1 GiB per batch; two batches kept.
    args = dict(num_tasks=4, episodes_per_task=4, horizon=64, step_bytes=2**20, batches=2)
    check_batch_memory("x/Y-v0", **args, available=2 * GIB)  # fits exactly
    monkeypatch.setattr("metarl.sampling.local.available_memory", lambda: None)
    check_batch_memory("x/Y-v0", **args)  # memory unknown: no check
    with pytest.raises(SamplerError) as info:
        check_batch_memory("x/Y-v0", **args, sub_env_bytes=GIB // 16, available=int(2.5 * GIB))
    assert str(info.value) == (
        "x/Y-v0: 4 tasks × 4 episodes per task × horizon 64 would need at least 3.0 GiB for the "
        "2 batches of episodes kept at once, more than the 2.5 GiB available; lower meta_batch_size "
        "(evaluate: --tasks), episodes_per_task (evaluate: --episodes) or horizon"
    )


def test_available_memory_is_read_on_linux():
    avail = available_memory()
    assert avail is not None and 0 < avail < 2**50


def test_train_with_huge_sizes_is_refused_in_one_line_with_the_figure(tmp_path, capsys):
    config = tmp_path / "huge.yaml"
    sizes = {"meta_batch_size": 100000, "episodes_per_task": 1000, "horizon": 1000}
    config.write_text(yaml.safe_dump({"env": "metarl/Navigation2D-v0", **sizes}))
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    # Navigation2D: (2 obs + 2 × 2 actions and noise + reward + mask) × 4 bytes = 32 bytes a step,
    # for the inner batch and the post-adaptation batch that an iteration keeps
    need = 2 * 100000 * 1000 * 1000 * 32 / GIB
    assert "100000 tasks × 1000 episodes per task × horizon 1000" in err
    assert f"would need at least {need:,.1f} GiB for the 2 batches of episodes kept at once" in err


def test_evaluate_with_huge_tasks_is_refused_before_sampling():
    config = Config(env="metarl/Navigation2D-v0", horizon=1000)
    policy = GaussianMLPPolicy(2, 2, [4])
    with pytest.raises(SamplerError, match=r"10000000 tasks × 1000 episodes per task .* GiB"):
        adapt_and_evaluate(policy, config, num_tasks=10**7, steps=1, seed=0, episodes_per_task=1000)


def test_async_backend_with_more_sub_envs_than_the_cap_is_refused_before_forking():
    with pytest.raises(SamplerError) as info:
        Sampler("metarl/Navigation2D-v0", MAX_ASYNC_ENVS, 2, 10, backend="async")
    assert f"{MAX_ASYNC_ENVS * 2} sub-envs is more than {MAX_ASYNC_ENVS}" in str(info.value)
    assert "backend async runs one process per sub-env" in str(info.value)


# ---- unknown env ids ------------------------------------------------------------------------


def test_an_unknown_namespace_says_how_a_users_env_is_named():
    assert "mine" not in {spec.namespace for spec in gym.registry.values()}
    message = unknown_env_message("mine/PointGoal-v0")
    assert message.startswith("unknown env id 'mine/PointGoal-v0'; did you mean")
    assert "A user's env is named module:Namespace/Env-v0, e.g. my_envs:mine/PointGoal-v0" in message
    assert "metarl imports the module first" in message
    # a typo of a registered id keeps the plain "did you mean"
    typo = unknown_env_message("metarl/HalfCheetahVell-v0")
    assert "did you mean metarl/HalfCheetahVel-v0" in typo and "module:" not in typo
    # a family without its namespace is found by name
    assert "did you mean metarl/HalfCheetahVel-v0" in unknown_env_message("HalfCheetahVel-v0")


def test_a_module_that_registers_no_such_id_is_named(tmp_path, monkeypatch):
    (tmp_path / "my_empty_envs.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(EnvNotFoundError) as info:
        Sampler("my_empty_envs:mine/Point-v0", 1, 1, 5)
    assert str(info.value).startswith(
        "unknown env id 'my_empty_envs:mine/Point-v0'; "
        "importing 'my_empty_envs' registered no 'mine/Point-v0'"
    )


@pytest.mark.parametrize("per_task", [False, True])
@pytest.mark.parametrize(
    "env_id", ["metarl/HalfCheetahVel-v0", "metarl/AntVel-v0", "metarl/HopperRandParams-v0"]
)
def test_a_pipelined_sampler_gives_the_episodes_of_an_unpipelined_one(env_id, per_task):
    # The ant's episodes end at different steps (its torso leaves the healthy range), and every
    # hopper falls before the horizon: the end of a rollout across groups.
    torch.manual_seed(0)
    env = gym.make(env_id)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    env.close()
    policy = GaussianMLPPolicy(obs_dim, act_dim, [32], init_log_std=0.5)
    N, E, T = 5, 3, 200 if "Hopper" in env_id else 60
    params = policy.params()
    if per_task:
        params = {k: torch.stack([v + 0.05 * i for i in range(N)]) for k, v in params.items()}
    episodes = {}
    for groups in (1, 2, 3):
        sampler = Sampler(env_id, N, E, T, groups=groups)
        assert sampler.env.num_envs == N * E
        assert (len(sampler.env.groups) if groups > 1 else 1) == groups
        sampler.set_tasks(sampler.sample_tasks(N, np.random.default_rng(0)))
        episodes[groups] = sampler.sample(
            policy, params, np.random.default_rng(1), torch.Generator().manual_seed(2), per_task
        )
        sampler.close()
    for groups in (2, 3):
        for name in ("obs", "actions", "rewards", "mask"):
            assert torch.equal(getattr(episodes[groups], name), getattr(episodes[1], name)), (groups, name)
    if env_id == "metarl/AntVel-v0":
        assert episodes[1].mask[-1].sum() < N * E  # some episodes ended early
    if "Hopper" in env_id:
        assert episodes[1].obs.shape[0] < T  # all ended early: the rollout stopped there


def test_pipelining_is_chosen_for_batched_engines_with_cores_to_spare():
    from metarl.sampling.local import pipeline_groups

    assert pipeline_groups(0, num_tasks=40, batched=True, cores=16) == 2
    assert pipeline_groups(0, num_tasks=40, batched=True, cores=2) == 1
    assert pipeline_groups(0, num_tasks=40, batched=False, cores=16) == 1
    assert pipeline_groups(4, num_tasks=3, batched=True, cores=2) == 3  # explicit, at most a group a task
    assert pipeline_groups(1, num_tasks=40, batched=True, cores=16) == 1

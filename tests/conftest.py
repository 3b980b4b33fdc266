"""Shared fixtures: a tiny float64 MAML problem on fixed episodes."""

from __future__ import annotations

import pytest
import torch

import metarl  # noqa: F401  (registers the families)
from metarl.adaptation import compute_advantages
from metarl.config import Config
from metarl.episodes import Episodes
from metarl.learners.maml_trpo import MAMLTRPO, InnerBatch
from metarl.policies import CategoricalMLPPolicy, GaussianMLPPolicy

#: The smallest navigation experiment that trains end to end in well under a second an iteration.
TINY = {
    "env": "metarl/Navigation2D-v0",
    "iterations": 2,
    "meta_batch_size": 3,
    "episodes_per_task": 2,
    "horizon": 12,
    "policy": {"hidden_sizes": [8]},
}


def random_episodes(
    T: int, N: int, E: int, obs_dim: int, act_dim: int, seed: int, discrete: bool = False
) -> Episodes:
    """Fixed episodes; with ``discrete`` the actions are indices in [0, act_dim)."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(T, N, E, dtype=torch.float64)
    mask[T - 2 :, 0, 0] = 0.0  # one short episode
    obs = torch.randn(T, N, E, obs_dim, generator=g, dtype=torch.float64)
    if discrete:
        actions = torch.randint(0, act_dim, (T, N, E), generator=g)
    else:
        actions = torch.randn(T, N, E, act_dim, generator=g, dtype=torch.float64)
    return Episodes(
        obs=obs,
        actions=actions,
        rewards=torch.randn(T, N, E, generator=g, dtype=torch.float64) * mask,
        mask=mask,
    )


def tiny_maml(inner_steps: int = 1, first_order: bool = False, discrete: bool = False):
    """A MAMLTRPO over a 2-4-2 tanh policy in float64 (Gaussian, or categorical over 3 actions
    with ``discrete``), with fixed inner and valid episodes."""
    torch.manual_seed(0)
    config = Config(meta_batch_size=3, episodes_per_task=2, horizon=6)
    config.policy.hidden_sizes = [4]
    config.policy.activation = "tanh"
    config.inner.lr = 0.5
    config.inner.steps = inner_steps
    config.inner.first_order = first_order
    if discrete:
        policy = CategoricalMLPPolicy(2, 3, [4], "tanh").double()
    else:
        policy = GaussianMLPPolicy(2, 2, [4], "tanh", init_log_std=-0.3).double()
    act_dim = 3 if discrete else 2
    algo = MAMLTRPO.from_config(config, policy=policy)
    batches = []
    for k in range(inner_steps):
        eps = random_episodes(6, 3, 2, 2, act_dim, seed=10 + k, discrete=discrete)
        batches.append(InnerBatch(eps, compute_advantages(eps, 0.99, 1.0, True)))
    valid = random_episodes(6, 3, 2, 2, act_dim, seed=99, discrete=discrete)
    return algo, batches, valid


def interrupt_at_iteration(trainer, n: int) -> None:
    """Make ``trainer`` raise KeyboardInterrupt when its ``n``-th iteration starts (a Ctrl-C)."""
    real = trainer.algorithm.train_iteration
    calls = {"n": 0}

    def interrupted(*args):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return real(*args)

    trainer.algorithm.train_iteration = interrupted


def replace_after_loading(monkeypatch, module, name: str, file) -> None:
    """Patch ``module.name`` (a loader) so that, once it has read, ``file`` gains a byte: as a
    run still training writes its next checkpoint while an evaluation loads the last one."""
    load = getattr(module, name)

    def load_then_replace(*args, **kwargs):
        loaded = load(*args, **kwargs)
        file.write_bytes(file.read_bytes() + b"\0")
        return loaded

    monkeypatch.setattr(module, name, load_then_replace)


@pytest.fixture
def maml_problem():
    return tiny_maml()

"""metarl: meta-reinforcement learning on Gymnasium.

Importing ``metarl`` registers the task families under ``metarl/`` (see ``metarl envs``).

The main entry points::

    import metarl
    config = metarl.load_config("experiments/navigation_2d.yaml", ["iterations=50"])
    metarl.Trainer(config, "runs/nav").train()
    config, policy = metarl.load_policy("runs/nav")
    result = metarl.adapt_and_evaluate(policy, config, num_tasks=40, steps=3)
"""

from __future__ import annotations

import metarl_envs  # noqa: F401  (registers the families)
from metarl_envs import TaskEnv

from metarl.config import Config, load_config
from metarl.episodes import Episodes
from metarl.errors import ConfigError, EnvNotFoundError, MetarlError, TaskProtocolError
from metarl.evaluation import adapt_and_evaluate, load_policy
from metarl.policies import CategoricalMLPPolicy, GaussianMLPPolicy, MLPPolicy
from metarl.sampling.local import Sampler, make_vector_env
from metarl.tasks import check_task_env, get_tasks, set_tasks
from metarl.trainer import Trainer

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ConfigError",
    "EnvNotFoundError",
    "Episodes",
    "CategoricalMLPPolicy",
    "GaussianMLPPolicy",
    "MLPPolicy",
    "MetarlError",
    "Sampler",
    "TaskEnv",
    "TaskProtocolError",
    "Trainer",
    "adapt_and_evaluate",
    "check_task_env",
    "get_tasks",
    "load_config",
    "load_policy",
    "make_vector_env",
    "set_tasks",
]

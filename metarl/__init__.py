"""metarl: meta-reinforcement learning on Gymnasium.

Importing ``metarl`` registers the task families under ``metarl/`` (see ``metarl envs``).

    import numpy as np
    import metarl

    learner = metarl.MAMLTRPO("metarl/Navigation2D-v0", meta_batch_size=20, seed=0)
    learner.learn(iterations=50, log_dir="runs/nav")      # TensorBoard + checkpoints there
    learner = metarl.load("runs/nav")                     # or a checkpoint file
    task = learner.env.unwrapped.sample_tasks(1, np.random.default_rng(3))[0]
    adapted = learner.adapt(task, steps=1)                # samples on the task, one PG step
    action = adapted.predict(np.zeros(2))                 # NumPy in, the env's action out
    result = metarl.evaluate(learner, num_tasks=40, steps=3)   # the evaluate JSON, as a dict

The learners (:class:`MAMLTRPO`, :class:`FOMAML`, :class:`Reptile`, :class:`ProMP`, and the
supervised ones in :mod:`metarl.supervised`) take their hyperparameters as keyword arguments;
``help(metarl.MAMLTRPO)`` lists them. The YAML configs of ``metarl train`` name the same ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import metarl_envs  # noqa: F401  (registers the families)
from metarl_envs import TaskEnv

from metarl import supervised
from metarl.config import Config, load_config
from metarl.episodes import Episodes
from metarl.errors import ConfigError, EnvNotFoundError, MetarlError, TaskProtocolError
from metarl.evaluation import adapt_and_evaluate, load_policy
from metarl.learners import FOMAML, MAMLTRPO, Learner, ProMP, Reptile, learner_class, learners, load, register
from metarl.policies import AdaptedPolicy, CategoricalMLPPolicy, GaussianMLPPolicy, MLPPolicy
from metarl.sampling import EpisodeSampler, make_sampler
from metarl.sampling.local import Sampler, make_vector_env
from metarl.summary import run_summary
from metarl.supervised import IMAML, MAML
from metarl.tasks import check_task_env, get_tasks, set_tasks
from metarl.trainer import Trainer, learner_from_config

__version__ = "0.1.0"


def evaluate(
    learner: Learner | str | Path, num_tasks: int = 40, steps: int = 3, seed: int = 0, **kwargs: Any
) -> dict[str, Any]:
    """Score a learner (or the checkpoint or run directory at a path) on ``num_tasks`` held-out
    tasks after 0..``steps`` adaptation steps: the dict ``metarl evaluate --json`` writes, less
    the ``checkpoint`` record that the command adds."""
    if not isinstance(learner, Learner):
        learner = load(learner)
    return learner.evaluate(num_tasks=num_tasks, steps=steps, seed=seed, **kwargs)


__all__ = [
    "FOMAML",
    "IMAML",
    "MAML",
    "MAMLTRPO",
    "AdaptedPolicy",
    "CategoricalMLPPolicy",
    "Config",
    "ConfigError",
    "EnvNotFoundError",
    "EpisodeSampler",
    "Episodes",
    "GaussianMLPPolicy",
    "Learner",
    "MLPPolicy",
    "MetarlError",
    "ProMP",
    "Reptile",
    "Sampler",
    "TaskEnv",
    "TaskProtocolError",
    "Trainer",
    "adapt_and_evaluate",
    "check_task_env",
    "evaluate",
    "get_tasks",
    "learner_class",
    "learner_from_config",
    "learners",
    "load",
    "load_config",
    "load_policy",
    "make_sampler",
    "make_vector_env",
    "register",
    "run_summary",
    "set_tasks",
    "supervised",
]

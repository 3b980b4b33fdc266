"""Where rollouts happen: this process (:class:`~metarl.sampling.local.Sampler`, over the
family's batched engine or Gymnasium's vector envs), Ray actors
(:class:`~metarl.sampling.ray.RaySampler`) or the GPU (:class:`~metarl.sampling.warp.WarpSampler`,
MuJoCo Warp with the policy beside it). Learners see only :class:`EpisodeSampler`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import torch

from metarl.episodes import Episodes
from metarl.policies import MLPPolicy, Params

if TYPE_CHECKING:
    from metarl.config import Config


@runtime_checkable
class EpisodeSampler(Protocol):
    """What every sampler offers a learner: tasks in, episodes out (on the CPU, or on the
    learner's device for the warp backend)."""

    obs_dim: int
    act_dim: int
    discrete: bool
    backend: str

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Any]:
        """Draw ``n`` tasks from the family's distribution."""
        ...

    def set_tasks(self, tasks: list[Any]) -> None:
        """Give every episode slot of task ``i`` the task ``tasks[i]``."""
        ...

    def sample(
        self,
        policy: MLPPolicy,
        params: Params,
        rng: np.random.Generator,
        generator: torch.Generator,
        per_task: bool = False,
    ) -> Episodes:
        """One episode in every slot with ``params`` (per task if ``per_task``)."""
        ...

    def env_actions(self, actions: np.ndarray) -> np.ndarray:
        """Policy actions as the env receives them."""
        ...

    def close(self) -> None:
        """Release envs, processes or actors."""
        ...


def make_sampler(
    config: Config, num_tasks: int | None = None, episodes: int | None = None, ray: bool = True
) -> EpisodeSampler:
    """The config's sampler for ``num_tasks`` tasks (default: the meta-batch) of ``episodes``
    episodes each: on MuJoCo Warp for ``sampler.backend: warp`` (and for ``auto`` on a GPU with
    the ``gpu`` extra), on Ray for ``ray`` (unless ``ray=False``), else local."""
    from metarl.sampling.local import Sampler

    args = (
        config.env,
        num_tasks or config.meta_batch_size,
        episodes or config.episodes_per_task,
        config.horizon,
    )
    kwargs: dict[str, Any] = {
        "env_kwargs": config.env_kwargs,
        "num_threads": config.sampler.num_threads,
        "rescale_actions": config.policy.rescale_actions,
        "groups": config.sampler.groups,
    }
    backend = config.sampler.backend
    if backend in ("warp", "auto"):
        from metarl.device import resolve_device
        from metarl.sampling.warp import WarpSampler, warp_usable

        device = resolve_device(config.device)
        if backend == "warp" or warp_usable(config.env, device):
            sampler = WarpSampler(
                *args,
                device=device,
                env_kwargs=config.env_kwargs,
                rescale_actions=kwargs["rescale_actions"],
                nconmax=config.sampler.nconmax or None,
                njmax=config.sampler.njmax or None,
                deterministic=config.sampler.deterministic,
            )
            sampler.chosen_by = "asked for" if backend == "warp" else "auto: a GPU and MuJoCo Warp"
            return sampler
    if backend == "ray" and ray:
        from metarl.sampling.ray import RaySampler

        return RaySampler(
            *args, num_workers=config.sampler.num_workers, address=config.sampler.ray_address, **kwargs
        )
    kwargs["batches_kept"] = config.inner.steps + 1  # the inner batches and the valid one
    backend = "auto" if config.sampler.backend == "ray" else config.sampler.backend
    return Sampler(*args, backend=backend, **kwargs)

"""Episodes: what a sampler returns and every learner consumes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Episodes:
    """A batch of episodes grouped by task; time-major.

    ``obs`` [T, N, E, obs_dim], ``actions`` [T, N, E, act_dim] (Box) or [T, N, E] action indices
    (Discrete), ``rewards`` and ``mask``
    [T, N, E] for N tasks and E episodes per task. ``mask[t]`` is 1 while the episode runs.
    """

    obs: Tensor
    actions: Tensor
    rewards: Tensor
    mask: Tensor

    @property
    def num_steps(self) -> int:
        """Env steps that belong to episodes (masked steps excluded)."""
        return int(self.mask.sum().item())

    def tasks(self, idx: Tensor) -> Episodes:
        """The episodes of the tasks ``idx`` only."""
        return Episodes(self.obs[:, idx], self.actions[:, idx], self.rewards[:, idx], self.mask[:, idx])

    def returns_per_task(self) -> Tensor:
        """Undiscounted episode return averaged over each task's episodes: [N]."""
        return self.rewards.sum(0).mean(-1)

    def to(self, device: torch.device | str) -> Episodes:
        """The same episodes on ``device`` (one copy per tensor; none if already there)."""
        return Episodes(
            *(x.to(device, non_blocking=True) for x in (self.obs, self.actions, self.rewards, self.mask))
        )

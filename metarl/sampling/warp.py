"""Rollouts on the GPU: the family's MuJoCo Warp twin steps every sub-env as one world of a batched
model, and the policy acts on the same device, so observations, actions, rewards and masks never
leave it (Warp's arrays and torch's tensors share memory).

The randomness is the CPU samplers': every sub-env is reset from its own seed drawn from ``rng``
(the same per-sub-env generators, so the same initial states up to float32) and the action noise
is drawn up front from ``generator``. The same seed on the same device gives the same episodes.
MuJoCo Warp computes in float32 and solves contacts in its own contact frames, so the episodes are
close to the C engine's, not identical to them; the tests say how close. (The model runs with
MuJoCo Warp's deterministic contact order and reductions, which is what makes a GPU's episodes
repeat.)
"""

from __future__ import annotations

import logging
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from metarl.episodes import Episodes
from metarl.errors import SamplerError
from metarl.policies import MLPPolicy, Params
from metarl.sampling.local import EnvActions, TaskSlots, check_spaces, draw_randomness
from metarl.tasks import resolve_env_id

log = logging.getLogger(__name__)


def warp_family(env_id: str) -> str | None:
    """The entry point of ``env_id``'s MuJoCo Warp twin, or None when it has none."""
    from metarl_envs import WARP_ENTRY_POINTS

    return WARP_ENTRY_POINTS.get(resolve_env_id(env_id).id)


def warp_usable(env_id: str, device: torch.device) -> bool:
    """Whether ``auto`` samples ``env_id`` on MuJoCo Warp: the learner is on a GPU, the family
    has a Warp twin and the ``gpu`` extra is installed."""
    from metarl_envs.warp import warp_available

    return device.type == "cuda" and warp_family(env_id) is not None and warp_available()


class WarpSampler(TaskSlots):
    """Collects ``episodes_per_task`` episodes for each of ``num_tasks`` tasks per call on the
    family's MuJoCo Warp twin, on ``device`` (the learner's: a GPU, or the CPU for tests)."""

    backend = "warp"

    def __init__(
        self,
        env_id: str,
        num_tasks: int,
        episodes_per_task: int,
        horizon: int,
        device: torch.device | str = "cpu",
        env_kwargs: dict[str, Any] | None = None,
        rescale_actions: bool = True,
        nconmax: int | None = None,
        njmax: int | None = None,
        deterministic: bool = True,
    ) -> None:
        """``nconmax`` and ``njmax``: MuJoCo Warp's contact and constraint buffers per world
        (None: the family's measured sizes); ``deterministic``: MuJoCo Warp's deterministic
        contact order and sums (reproducible episodes on a GPU, at a cost in speed)."""
        from metarl_envs import WARP_ENTRY_POINTS
        from metarl_envs.warp import import_warp

        from metarl.tasks import env_kwargs_error

        entry = warp_family(env_id)
        if entry is None:
            raise SamplerError(
                f"{env_id}: sampler backend warp runs only the MuJoCo families that have a MuJoCo Warp "
                f"twin ({', '.join(WARP_ENTRY_POINTS)}); use backend auto, sync, async or ray"
            )
        import_warp()  # the one-line error naming the extra, before anything is built
        self.env_id = env_id
        self.num_tasks, self.episodes_per_task, self.horizon = num_tasks, episodes_per_task, horizon
        self.device = torch.device(device)
        creator = gym.envs.registration.load_env_creator(entry)
        error = env_kwargs_error(env_id, creator, env_kwargs or {})
        if error is not None:
            raise error
        self.env = creator(
            num_envs=num_tasks * episodes_per_task,
            max_episode_steps=horizon,
            device=str(self.device),
            nconmax=nconmax,
            njmax=njmax,
            deterministic=deterministic,
            **(env_kwargs or {}),
        )
        self.device = self.env.device  # cuda -> cuda:N
        check_spaces(env_id, self.env.single_observation_space, self.env.single_action_space)
        space = self.env.single_action_space
        self.obs_dim = int(np.prod(self.env.single_observation_space.shape))
        self.act_dim = int(np.prod(space.shape))
        self.discrete = False
        self.env_actions = EnvActions(space, rescale_actions)
        self._scale = torch.as_tensor(self.env_actions.scale, dtype=torch.float32, device=self.device)
        self._offset = torch.as_tensor(self.env_actions.offset, dtype=torch.float32, device=self.device)
        self._tasks: list[Any] | None = None
        self._task_source = self.env
        log.info("sampler backend for %s: warp (%s on %s)", env_id, type(self.env).__name__, self.device)

    def sample(
        self,
        policy: MLPPolicy,
        params: Params,
        rng: np.random.Generator,
        generator: torch.Generator,
        per_task_params: bool = False,
    ) -> Episodes:
        """Run one episode in every sub-env with π_params (per-task ``params`` with a leading task
        dimension if ``per_task_params``); the episodes are on the sampler's device."""
        seeds, noise = draw_randomness(
            policy, self.num_tasks, self.episodes_per_task, self.horizon, rng, generator
        )
        return self.run(policy, params, per_task_params, seeds, noise)

    def run(
        self, policy: MLPPolicy, params: Params, per_task_params: bool, seeds: np.ndarray, noise: Tensor
    ) -> Episodes:
        """The rollout of :meth:`sample` from given reset ``seeds`` [N·E] and action ``noise``
        [T, N, E, ...]. Entries after a sub-env's episode ended are zero (and masked)."""
        N, E, T, dev = self.num_tasks, self.episodes_per_task, self.horizon, self.device
        noise = noise.to(dev)
        params = {k: v.detach().to(dev) for k, v in params.items()}
        obs_buf = torch.zeros(T, N, E, self.obs_dim, device=dev)
        act_buf = torch.zeros(T, N, E, *policy.action_shape, dtype=policy.action_dtype, device=dev)
        rew_buf = torch.zeros(T, N, E, device=dev)
        mask_buf = torch.zeros(T, N, E, device=dev)
        obs = self.env.reset(seed=[int(s) for s in seeds])[0]
        alive = torch.ones(N * E, dtype=torch.bool, device=dev)
        overflowed = torch.zeros(N * E, dtype=torch.bool, device=dev)  # in a step that counts
        steps = 0
        with torch.no_grad():
            for t in range(T):
                o = obs.view(N, E, -1)
                dist = policy.dist(params, o, task_dim=0 if per_task_params else None)
                actions = policy.act(dist, noise[t])
                obs, reward, terminated, truncated, _ = self.env.step(
                    (self._offset + self._scale * actions).view(N * E, -1)
                )
                overflowed |= self.env.buffer_overflows() & alive
                a = alive.view(N, E).to(torch.float32)
                obs_buf[t] = o * a.unsqueeze(-1)
                act_buf[t] = actions * a.unsqueeze(-1)
                rew_buf[t] = reward.view(N, E) * a
                mask_buf[t] = a
                alive &= ~(terminated | truncated)
                steps = t + 1
                if not bool(alive.any()):
                    break
        self._check(rew_buf[:steps], obs_buf[:steps], overflowed)
        return Episodes(obs_buf[:steps], act_buf[:steps], rew_buf[:steps], mask_buf[:steps])

    def _check(self, rewards: Tensor, obs: Tensor, overflowed: Tensor) -> None:
        """One line naming the tasks whose simulations diverged, or the overflowed buffers."""
        try:
            self.env.check_buffers(overflowed)
        except RuntimeError as exc:
            raise SamplerError(f"{self.env_id}: {exc}; raise sampler.nconmax and sampler.njmax") from None
        bad = ~(torch.isfinite(rewards).all(0) & torch.isfinite(obs).all(-1).all(0))  # [N, E]
        if bool(bad.any()):
            tasks = self._tasks or []
            ids = sorted(set(bad.nonzero()[:, 0].tolist()))
            named = ", ".join(repr(tasks[i]) for i in ids[:3]) if tasks else f"tasks {ids[:3]}"
            raise SamplerError(
                f"{self.env_id}: the MuJoCo Warp simulation became unstable (non-finite state) in "
                f"{len(ids)} task(s): {named}"
            )

    def close(self) -> None:
        """Release the engine's arrays."""
        self.env.close()

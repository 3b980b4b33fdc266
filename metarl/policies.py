"""MLP policies (Gaussian for Box actions, categorical for Discrete ones), used functionally so
that adapted parameters are plain tensors.

The module holds the meta-parameters θ. Every forward pass goes through
``torch.func.functional_call`` with an explicit parameter dict, so the same code evaluates θ,
adapted parameters θ' (graph-connected to θ for second-order MAML) and per-task batches of
parameters (a leading task dimension, mapped with ``torch.func.vmap``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

Params = dict[str, Tensor]

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}
_LOG_2PI = math.log(2.0 * math.pi)


def mlp(
    in_dim: int, out_dim: int, hidden_sizes: tuple[int, ...] | list[int], activation: str
) -> nn.Sequential:
    """A plain MLP: Linear, activation, ..., Linear."""
    layers: list[nn.Module] = []
    last = in_dim
    for size in hidden_sizes:
        layers += [nn.Linear(last, size), _ACTIVATIONS[activation]()]
        last = size
    layers.append(nn.Linear(last, out_dim))
    return nn.Sequential(*layers)


class MLPPolicy(nn.Module):
    """A stochastic policy evaluated functionally: ``dist`` maps an explicit parameter dict and
    observations to the distribution's parameters (a tuple of tensors), which ``log_prob``,
    ``kl`` and ``sample`` consume. Learners touch policies only through these methods."""

    #: The shape of one action as stored in a batch of episodes, and its dtype.
    action_shape: tuple[int, ...] = ()
    action_dtype: torch.dtype = torch.float32

    def params(self) -> Params:
        """θ as a name -> tensor dict (the live parameters, not copies)."""
        return dict(self.named_parameters())

    def dist(self, params: Params, obs: Tensor, task_dim: int | None = None) -> tuple[Tensor, ...]:
        """The distribution's parameters for ``obs`` under ``params``.

        With ``task_dim=None`` ``params`` is one parameter set. Otherwise every tensor of
        ``params`` has a leading task dimension and ``obs`` has the matching task dimension at
        ``task_dim``; each task's observations go through that task's parameters, and the
        outputs keep the task dimension at ``task_dim``.
        """

        def call(p: Params, o: Tensor) -> tuple[Tensor, ...]:
            return functional_call(self, p, (o,))

        if task_dim is None:
            return call(params, obs)
        return vmap(call, in_dims=(0, task_dim), out_dims=task_dim)(params, obs)

    def log_prob(self, dist: tuple[Tensor, ...], actions: Tensor) -> Tensor:
        """log π(a|s) for every step, from ``dist``'s output."""
        raise NotImplementedError

    def kl(self, old: tuple[Tensor, ...], new: tuple[Tensor, ...]) -> Tensor:
        """KL(old || new) for every step."""
        raise NotImplementedError

    def noise(self, shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
        """The randomness of ``shape`` action draws, drawn up front, so that which worker or
        shard acts on which sub-env never changes the actions."""
        raise NotImplementedError

    def act(self, dist: tuple[Tensor, ...], noise: Tensor) -> Tensor:
        """Actions from ``dist`` given their pre-drawn ``noise``."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(
        self,
        params: Params,
        obs: Tensor,
        task_dim: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draw actions from π_params(·|obs) with an explicit RNG."""
        dist = self.dist(params, obs, task_dim)
        return self.act(dist, self.noise(tuple(dist[0].shape[:-1]), generator))


class GaussianMLPPolicy(MLPPolicy):
    """π(a|s) = N(MLP(s), diag(exp(log_std))²) with a learned, state-independent log-std."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_sizes: tuple[int, ...] | list[int] = (100, 100),
        activation: str = "relu",
        init_log_std: float = 0.0,
        init_output_scale: float = 1.0,
    ) -> None:
        """``init_output_scale`` < 1 scales the mean head's initial weights and zeroes its bias
        (as Andrychowicz et al. 2021 advise for on-policy RL): the initial policy's mean action is
        then near zero in every state, whatever the seed. It draws no random numbers, so the
        other layers are initialised as with 1.0 (PyTorch's default, bias included)."""
        super().__init__()
        self.mean = mlp(obs_dim, act_dim, hidden_sizes, activation)
        if init_output_scale != 1.0:
            with torch.no_grad():
                self.mean[-1].weight.mul_(init_output_scale)
                self.mean[-1].bias.zero_()
        self.log_std = nn.Parameter(torch.full((act_dim,), float(init_log_std)))
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.action_shape = (act_dim,)

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        mean = self.mean(obs)
        return mean, self.log_std.expand_as(mean)

    def log_prob(self, dist: tuple[Tensor, ...], actions: Tensor) -> Tensor:
        mean, log_std = dist
        return gaussian_log_prob(mean, log_std, actions)

    def kl(self, old: tuple[Tensor, ...], new: tuple[Tensor, ...]) -> Tensor:
        return gaussian_kl(old[0], old[1], new[0], new[1])

    def noise(self, shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
        return torch.randn((*shape, self.act_dim), generator=generator, device=_noise_device(generator))

    def act(self, dist: tuple[Tensor, ...], noise: Tensor) -> Tensor:
        mean, log_std = dist
        return mean + log_std.exp() * noise.to(mean.dtype)


class CategoricalMLPPolicy(MLPPolicy):
    """π(a|s) = Categorical(softmax(MLP(s))) over ``num_actions`` discrete actions."""

    action_dtype = torch.int64

    def __init__(
        self,
        obs_dim: int,
        num_actions: int,
        hidden_sizes: tuple[int, ...] | list[int] = (100, 100),
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.logits = mlp(obs_dim, num_actions, hidden_sizes, activation)
        self.obs_dim, self.act_dim = obs_dim, num_actions

    def forward(self, obs: Tensor) -> tuple[Tensor]:
        return (torch.log_softmax(self.logits(obs), dim=-1),)

    def log_prob(self, dist: tuple[Tensor, ...], actions: Tensor) -> Tensor:
        return dist[0].gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)

    def kl(self, old: tuple[Tensor, ...], new: tuple[Tensor, ...]) -> Tensor:
        return (old[0].exp() * (old[0] - new[0])).sum(-1)

    def noise(self, shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
        return torch.rand(shape, generator=generator, dtype=torch.float64, device=_noise_device(generator))

    def act(self, dist: tuple[Tensor, ...], noise: Tensor) -> Tensor:
        # inverse CDF: the first action whose cumulative probability exceeds the uniform draw
        cdf = dist[0].double().exp().cumsum(-1)
        index = (cdf <= noise.unsqueeze(-1)).sum(-1)
        return index.clamp(max=dist[0].shape[-1] - 1)


def _noise_device(generator: torch.Generator | None) -> torch.device:
    """Action noise is drawn where its generator lives (the CPU, where sampling runs)."""
    return generator.device if generator is not None else torch.device("cpu")


def gaussian_log_prob(mean: Tensor, log_std: Tensor, actions: Tensor) -> Tensor:
    """log N(actions; mean, exp(log_std)²), summed over the last (action) dimension."""
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - 0.5 * _LOG_2PI).sum(-1)


def gaussian_kl(mean_p: Tensor, log_std_p: Tensor, mean_q: Tensor, log_std_q: Tensor) -> Tensor:
    """KL(p || q) between diagonal Gaussians, summed over the last dimension."""
    var_p, var_q = torch.exp(2 * log_std_p), torch.exp(2 * log_std_q)
    kl = log_std_q - log_std_p + (var_p + (mean_p - mean_q).pow(2)) / (2 * var_q) - 0.5
    return kl.sum(-1)


def make_policy(
    obs_dim: int,
    act_dim: int,
    discrete: bool,
    hidden_sizes: tuple[int, ...] | list[int] = (100, 100),
    activation: str = "relu",
    init_log_std: float = 0.0,
    init_output_scale: float = 1.0,
) -> MLPPolicy:
    """A categorical policy over ``act_dim`` actions if ``discrete``, else a Gaussian one."""
    if discrete:
        return CategoricalMLPPolicy(obs_dim, act_dim, hidden_sizes, activation)
    return GaussianMLPPolicy(obs_dim, act_dim, hidden_sizes, activation, init_log_std, init_output_scale)


def policy_from_state(
    state: dict[str, Tensor], hidden_sizes: list[int], activation: str, init_log_std: float = 0.0
) -> MLPPolicy:
    """An (uninitialised) policy shaped like the parameters ``state``, e.g. a checkpoint's."""
    discrete = "log_std" not in state
    layers = sorted((k for k in state if k.endswith(".weight")), key=lambda k: int(k.split(".")[1]))
    if not layers:
        raise ValueError("the parameters hold no policy network")
    obs_dim, act_dim = state[layers[0]].shape[1], state[layers[-1]].shape[0]
    return make_policy(obs_dim, act_dim, discrete, hidden_sizes, activation, init_log_std)


class AdaptedPolicy:
    """A policy with one parameter set (θ, or θ' adapted to one task) that acts like
    Stable-Baselines3's ``predict``: NumPy observations in, actions the env takes out."""

    def __init__(
        self,
        policy: MLPPolicy,
        params: Params,
        env_actions: Callable[[np.ndarray], np.ndarray],
        task: object = None,
    ) -> None:
        self.policy = policy
        #: The parameters (name -> tensor, detached, on the policy's device).
        self.params = {k: v.detach() for k, v in params.items()}
        self.task = task
        self._env_actions = env_actions

    @torch.no_grad()
    def predict(
        self, obs: np.ndarray, deterministic: bool = True, generator: torch.Generator | None = None
    ) -> np.ndarray:
        """Actions for one observation ``[obs_dim]`` or a batch ``[B, obs_dim]``: the mean (most
        probable) action if ``deterministic``, else a draw from ``generator``."""
        device = next(iter(self.params.values())).device
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=device)
        single = x.dim() == 1
        x = x.reshape(1 if single else x.shape[0], -1)
        if x.shape[1] != self.policy.obs_dim:
            raise ValueError(
                f"predict: observations have {x.shape[1]} values, the policy takes {self.policy.obs_dim}"
            )
        dist = self.policy.dist(self.params, x)
        if deterministic:
            actions = dist[0].argmax(-1) if self.policy.action_dtype == torch.int64 else dist[0]
        else:
            actions = self.policy.act(
                dist, self.policy.noise(tuple(dist[0].shape[:-1]), generator).to(device)
            )
        out = self._env_actions(actions.cpu().numpy())
        return out[0] if single else out

    def __repr__(self) -> str:
        return f"AdaptedPolicy(task={self.task!r})"

"""Gaussian MLP policy, used functionally so that adapted parameters are plain tensors.

The module holds the meta-parameters θ. Every forward pass goes through
``torch.func.functional_call`` with an explicit parameter dict, so the same code evaluates θ,
adapted parameters θ' (graph-connected to θ for second-order MAML) and per-task batches of
parameters (a leading task dimension, mapped with ``torch.func.vmap``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

Params = dict[str, Tensor]

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}
_LOG_2PI = math.log(2.0 * math.pi)


class GaussianMLPPolicy(nn.Module):
    """π(a|s) = N(MLP(s), diag(exp(log_std))²) with a learned, state-independent log-std."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_sizes: tuple[int, ...] | list[int] = (100, 100),
        activation: str = "relu",
        init_log_std: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        last = obs_dim
        for size in hidden_sizes:
            layers += [nn.Linear(last, size), _ACTIVATIONS[activation]()]
            last = size
        layers.append(nn.Linear(last, act_dim))
        self.mean = nn.Sequential(*layers)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(init_log_std)))
        self.obs_dim, self.act_dim = obs_dim, act_dim

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        mean = self.mean(obs)
        return mean, self.log_std.expand_as(mean)

    def params(self) -> Params:
        """θ as a name -> tensor dict (the live parameters, not copies)."""
        return dict(self.named_parameters())

    def dist(self, params: Params, obs: Tensor, task_dim: int | None = None) -> tuple[Tensor, Tensor]:
        """Mean and log-std of π_params(·|obs).

        With ``task_dim=None`` ``params`` is one parameter set. Otherwise every tensor of
        ``params`` has a leading task dimension and ``obs`` has the matching task dimension at
        ``task_dim``; each task's observations go through that task's parameters, and the
        outputs keep the task dimension at ``task_dim``.
        """

        def call(p: Params, o: Tensor) -> tuple[Tensor, Tensor]:
            return functional_call(self, p, (o,))

        if task_dim is None:
            return call(params, obs)
        return vmap(call, in_dims=(0, task_dim), out_dims=task_dim)(params, obs)

    @torch.no_grad()
    def sample(
        self,
        params: Params,
        obs: Tensor,
        task_dim: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draw actions from π_params(·|obs) with an explicit RNG."""
        mean, log_std = self.dist(params, obs, task_dim)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        return mean + log_std.exp() * noise


def gaussian_log_prob(mean: Tensor, log_std: Tensor, actions: Tensor) -> Tensor:
    """log N(actions; mean, exp(log_std)²), summed over the last (action) dimension."""
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - 0.5 * _LOG_2PI).sum(-1)


def gaussian_kl(mean_p: Tensor, log_std_p: Tensor, mean_q: Tensor, log_std_q: Tensor) -> Tensor:
    """KL(p || q) between diagonal Gaussians, summed over the last dimension."""
    var_p, var_q = torch.exp(2 * log_std_p), torch.exp(2 * log_std_q)
    kl = log_std_q - log_std_p + (var_p + (mean_p - mean_q).pow(2)) / (2 * var_q) - 0.5
    return kl.sum(-1)

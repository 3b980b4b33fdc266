"""Discounted returns and generalized advantage estimation on masked, time-major batches.

All tensors are time-major: ``[T, ...]``. ``mask[t]`` is 1 while the episode is running at step
``t`` and 0 after it ended; rewards past the end must already be zero. Nothing is bootstrapped
past the last step (episodes end or are cut at the horizon, as in rllab and the MAML paper).
"""

from __future__ import annotations

import torch
from torch import Tensor


def discounted_returns(rewards: Tensor, mask: Tensor, gamma: float) -> Tensor:
    """R_t = Σ_{k≥t} γ^{k-t} r_k within each episode."""
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = rewards[t] + gamma * running
        running = running * mask[t]
        out[t] = running
    return out


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float) -> Tensor:
    """GAE(γ, λ) advantages (Schulman et al. 2016); with λ = 1 this is R_t − V(s_t)."""
    T = rewards.shape[0]
    values = values * mask
    next_values = torch.cat([values[1:], torch.zeros_like(values[:1])])
    next_mask = torch.cat([mask[1:], torch.zeros_like(mask[:1])])
    deltas = rewards + gamma * next_values * next_mask - values
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in range(T - 1, -1, -1):
        running = deltas[t] + gamma * lam * next_mask[t] * running
        out[t] = running * mask[t]
    return out


def masked_normalize(x: Tensor, mask: Tensor, dims: tuple[int, ...], eps: float = 1e-8) -> Tensor:
    """(x − mean) / std over ``dims``, counting only entries where ``mask`` is 1."""
    count = mask.sum(dims, keepdim=True).clamp_min(1.0)
    mean = (x * mask).sum(dims, keepdim=True) / count
    var = ((x - mean).pow(2) * mask).sum(dims, keepdim=True) / count
    return (x - mean) / (var.sqrt() + eps) * mask

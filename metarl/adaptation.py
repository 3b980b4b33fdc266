"""The inner loop: advantages, the vanilla policy-gradient loss and differentiable PG steps.

``adapt`` takes θ (one parameter set) or per-task parameters (a leading task dimension) and
returns per-task adapted parameters θ'_i = θ_i − α ∇L_i(θ_i), computed for every task in one
backward pass. With ``first_order=False`` the step keeps its graph (``create_graph``), so a loss
on θ' differentiates back to θ through the inner gradient: the second-order MAML gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from metarl import baseline
from metarl.policies import MLPPolicy, Params
from metarl.returns import discounted_returns, gae, masked_normalize
from metarl.sampler import Episodes


@dataclass
class Advantages:
    """Advantages [T, N, E] for a batch of episodes, and how the baseline fit went."""

    values: Tensor
    baseline_retries: int = 0
    baseline_fallbacks: int = 0
    nonfinite: int = 0  # NaN/inf advantages (from NaN/inf rewards, say) replaced by 0


def compute_advantages(
    episodes: Episodes, gamma: float, gae_lambda: float, normalize: bool = True
) -> Advantages:
    """Fit the linear baseline per task, then GAE; optionally normalized per task."""
    returns = discounted_returns(episodes.rewards, episodes.mask, gamma)
    fit = baseline.fit_predict(episodes.obs, returns, episodes.mask, task_dim=1)
    adv = gae(episodes.rewards, fit.values, episodes.mask, gamma, gae_lambda)
    if normalize:
        adv = masked_normalize(adv, episodes.mask, dims=(0, 2))
    nonfinite = int((~torch.isfinite(adv) & (episodes.mask > 0)).sum())
    adv = torch.nan_to_num(adv, nan=0.0, posinf=0.0, neginf=0.0)
    return Advantages(adv.detach(), fit.retries, fit.fallbacks, nonfinite)


def masked_task_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over time and episodes of each task ([T, N, E] -> [N]), counting unmasked steps."""
    return (x * mask).sum((0, 2)) / mask.sum((0, 2)).clamp_min(1.0)


def log_probs(policy: MLPPolicy, params: Params, episodes: Episodes, per_task: bool) -> Tensor:
    """log π_params(a_t | s_t) for every step: [T, N, E]."""
    dist = policy.dist(params, episodes.obs, task_dim=1 if per_task else None)
    return policy.log_prob(dist, episodes.actions)


def vpg_loss(
    policy: MLPPolicy,
    params: Params,
    episodes: Episodes,
    advantages: Tensor,
    per_task: bool,
) -> Tensor:
    """Per-task vanilla policy-gradient loss −E[log π(a|s) A]: [N]."""
    logp = log_probs(policy, params, episodes, per_task)
    return -masked_task_mean(logp * advantages, episodes.mask)


def _per_task(params: Params, num_tasks: int, per_task: bool) -> Params:
    """Make params differentiable and give them a task dimension (a view: grads stay per task)."""
    if not any(p.requires_grad for p in params.values()):
        params = {k: v.detach().requires_grad_() for k, v in params.items()}
    if per_task:
        return params
    return {k: v.unsqueeze(0).expand(num_tasks, *v.shape) for k, v in params.items()}


def adapt(
    policy: MLPPolicy,
    params: Params,
    episodes: Episodes,
    advantages: Tensor,
    lr: float,
    first_order: bool,
    per_task: bool = False,
) -> Params:
    """One PG step per task: θ'_i = θ_i − lr · ∇_θ L_i(θ_i). Returns per-task parameters.

    ``per_task`` says whether ``params`` already has a leading task dimension (from an earlier
    step). With ``first_order`` the inner gradient is treated as a constant, as in FOMAML.
    """
    num_tasks = episodes.obs.shape[1]
    create_graph = not first_order and any(p.requires_grad for p in params.values())
    params = _per_task(params, num_tasks, per_task)
    loss = vpg_loss(policy, params, episodes, advantages, per_task=True).sum()
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
    return {k: p - lr * g for (k, p), g in zip(params.items(), grads, strict=True)}

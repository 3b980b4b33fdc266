"""The inner loop: advantages, the vanilla policy-gradient loss and differentiable PG steps.

``pg_step`` takes θ (one parameter set) or per-task parameters (a leading task dimension) and
returns per-task adapted parameters θ'_i = θ_i − α ∇L_i(θ_i), computed for every task in one
backward pass. With ``first_order=False`` the step keeps its graph (``create_graph``), so a loss
on θ' differentiates back to θ through the inner gradient: the second-order MAML gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from metarl import value_baseline
from metarl.episodes import Episodes
from metarl.policies import MLPPolicy, Params
from metarl.returns import discounted_returns, gae, masked_normalize


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
    fit = value_baseline.fit_predict(episodes.obs, returns, episodes.mask, task_dim=1)
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


ESTIMATORS = ("vpg", "lvc")


def inner_surrogate(
    policy: MLPPolicy,
    params: Params,
    episodes: Episodes,
    advantages: Tensor,
    per_task: bool,
    estimator: str = "vpg",
) -> Tensor:
    """Per-task inner policy-gradient loss: [N].

    ``vpg``: −E[log π(a|s) A], the score-function surrogate of MAML.
    ``lvc``: −E[π(a|s) / ⊥π(a|s) A], ProMP's low-variance curvature surrogate (Rothfuss et al.
    2019): the same gradient at θ, but its Hessian, E[(∇²log π + ∇log π ∇log πᵀ) A], carries the
    term the score-function surrogate drops, so the meta-gradient through the inner step has
    lower variance.
    """
    logp = log_probs(policy, params, episodes, per_task)
    if estimator == "lvc":
        weights = torch.exp(logp - logp.detach())
    elif estimator == "vpg":
        weights = logp
    else:
        raise ValueError(f"unknown inner estimator {estimator!r}; expected one of {ESTIMATORS}")
    return -masked_task_mean(weights * advantages, episodes.mask)


def _per_task(params: Params, num_tasks: int, per_task: bool) -> Params:
    """Make params differentiable and give them a task dimension (a view: grads stay per task)."""
    if not any(p.requires_grad for p in params.values()):
        params = {k: v.detach().requires_grad_() for k, v in params.items()}
    if per_task:
        return params
    return {k: v.unsqueeze(0).expand(num_tasks, *v.shape) for k, v in params.items()}


def gradient_step(
    params: Params,
    task_losses: Callable[[Params], Tensor],
    num_tasks: int,
    lr: float,
    first_order: bool,
    per_task: bool = False,
) -> Params:
    """One gradient step per task: θ'_i = θ_i − lr · ∇ L_i(θ_i), for all tasks in one backward pass.

    ``task_losses(params)`` maps per-task parameters (a leading task dimension) to the ``[N]``
    per-task losses. ``per_task`` says whether ``params`` already has the task dimension (from
    an earlier step). Unless ``first_order``, the step keeps its graph (``create_graph``), so a
    loss on θ' differentiates back to θ through the inner gradient: the second-order MAML
    gradient. RL's :func:`pg_step` and the supervised learners both step through here.
    """
    create_graph = not first_order and any(p.requires_grad for p in params.values())
    params = _per_task(params, num_tasks, per_task)
    loss = task_losses(params).sum()
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
    return {k: p - lr * g for (k, p), g in zip(params.items(), grads, strict=True)}


def pg_step(
    policy: MLPPolicy,
    params: Params,
    episodes: Episodes,
    advantages: Tensor,
    lr: float,
    first_order: bool,
    per_task: bool = False,
    estimator: str = "vpg",
) -> Params:
    """One PG step per task on its episodes: θ'_i = θ_i − lr · ∇_θ L_i(θ_i) (see
    :func:`gradient_step`), with the inner surrogate ``estimator`` (see :func:`inner_surrogate`)."""

    def losses(p: Params) -> Tensor:
        return inner_surrogate(policy, p, episodes, advantages, per_task=True, estimator=estimator)

    return gradient_step(params, losses, episodes.obs.shape[1], lr, first_order, per_task)

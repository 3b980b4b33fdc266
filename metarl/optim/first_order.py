"""The first-order outer steps the learners compose: optimizer steps on a loss or on given
gradients (FOMAML with Adam, ProMP, the supervised learners), and Reptile's interpolation."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from metarl.policies import Params


def minimize(
    optimizer: torch.optim.Optimizer, loss_fn: Callable[[], Tensor], steps: int
) -> tuple[bool, Tensor]:
    """``steps`` optimizer steps on ``loss_fn()``; stops before stepping on a non-finite
    gradient. Returns whether every step was taken, and the first step's loss (detached)."""
    first: Tensor | None = None
    for _ in range(steps):
        loss = loss_fn()
        if first is None:
            first = loss.detach()
        optimizer.zero_grad()
        loss.backward()
        if not finite_grads(optimizer):
            optimizer.zero_grad()
            return False, first
        optimizer.step()
    assert first is not None
    return True, first


def apply_gradients(
    optimizer: torch.optim.Optimizer, params: Sequence[Tensor], grads: Sequence[Tensor]
) -> bool:
    """One optimizer step with the gradients ``grads`` of ``params`` (computed elsewhere, e.g. an
    implicit or second-order meta-gradient); no step if any is non-finite."""
    if not all(bool(torch.isfinite(g).all()) for g in grads):
        return False
    optimizer.zero_grad()
    for p, g in zip(params, grads, strict=True):
        p.grad = g.detach()
    optimizer.step()
    return True


def finite_grads(optimizer: torch.optim.Optimizer) -> bool:
    """Whether every gradient ``optimizer`` would step on is finite."""
    return all(
        bool(torch.isfinite(p.grad).all())
        for group in optimizer.param_groups
        for p in group["params"]
        if p.grad is not None
    )


def reptile_update(theta: Params, adapted: Params, epsilon: float) -> dict[str, Tensor]:
    """θ + ε · mean_i(W_i − θ) for per-task parameters ``adapted`` (leading task dimension)."""
    return {k: v + epsilon * (adapted[k].mean(0) - v) for k, v in theta.items()}


def reptile_step(module: torch.nn.Module, adapted: Params, epsilon: float) -> tuple[bool, float]:
    """Move ``module``'s parameters to θ + ε · mean_i(W_i − θ), unless that is non-finite.
    Returns whether it moved, and the step's norm."""
    theta = {k: v.detach() for k, v in module.named_parameters()}
    new = reptile_update(theta, {k: v.detach() for k, v in adapted.items()}, epsilon)
    norm = float(torch.sqrt(sum(((new[k] - theta[k]) ** 2).sum() for k in theta)))
    if not all(bool(torch.isfinite(v).all()) for v in new.values()):
        return False, norm
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(new[name])
    return True, norm

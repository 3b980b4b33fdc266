"""TRPO's update (Schulman et al. 2015) for any differentiable surrogate and KL.

The step direction solves H x = g by conjugate gradient, with H the Hessian of the mean KL
(damped), reached only through Hessian-vector products. The step is scaled to the trust region
and backtracked until the surrogate improves and KL ≤ max_kl; otherwise the parameters are
restored.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class TRPOResult:
    """What one TRPO step did."""

    loss_before: float
    loss_after: float
    kl: float
    ls_steps: int  # line-search evaluations made
    accepted: bool
    reason: str = ""


def flat(tensors: Sequence[Tensor]) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def set_flat_(params: Sequence[Tensor], vector: Tensor) -> None:
    """Write ``vector`` into ``params`` in place."""
    offset = 0
    with torch.no_grad():
        for p in params:
            n = p.numel()
            p.copy_(vector[offset : offset + n].view_as(p))
            offset += n


def conjugate_gradient(
    hvp: Callable[[Tensor], Tensor], b: Tensor, iters: int = 10, tol: float = 1e-10
) -> Tensor:
    """Approximately solve H x = b for symmetric positive-definite H given x ↦ Hx."""
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = r @ r
    for _ in range(iters):
        if rr < tol:
            break
        Hp = hvp(p)
        alpha = rr / (p @ Hp)
        x += alpha * p
        r -= alpha * Hp
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def trpo_step(
    params: Sequence[Tensor],
    loss_and_kl: Callable[[bool], tuple[Tensor, Tensor]],
    max_kl: float,
    cg_iters: int = 10,
    cg_damping: float = 1e-5,
    ls_max_steps: int = 15,
    ls_backtrack_ratio: float = 0.8,
    curvature_kl: Callable[[], Tensor] | None = None,
) -> TRPOResult:
    """One trust-region step on ``params`` (updated in place).

    ``loss_and_kl(create_graph)`` returns the loss to minimise (the negative surrogate) and the
    mean KL from the current policy, both as functions of ``params``; with ``create_graph`` the
    KL must be twice differentiable. ``curvature_kl``, if given, returns the KL whose
    Hessian-vector products shape the step instead (e.g. on a subsample); the line search still
    checks the full KL.
    """
    params = list(params)
    old = flat([p.detach() for p in params]).clone()

    loss, kl = loss_and_kl(True)
    loss_before = float(loss.detach())
    grads = torch.autograd.grad(loss, params, retain_graph=True)
    g = flat(grads)
    if curvature_kl is not None:
        kl = curvature_kl()
    kl_grads = flat(torch.autograd.grad(kl, params, create_graph=True))

    def hvp(v: Tensor) -> Tensor:
        hv = torch.autograd.grad(kl_grads @ v, params, retain_graph=True)
        return flat(hv) + cg_damping * v

    if not torch.isfinite(g).all():
        return TRPOResult(loss_before, loss_before, 0.0, 0, False, "non-finite gradient")
    step_dir = conjugate_gradient(hvp, g, iters=cg_iters)
    shs = 0.5 * (step_dir @ hvp(step_dir))
    if not torch.isfinite(step_dir).all() or not torch.isfinite(shs) or shs <= 0:
        return TRPOResult(loss_before, loss_before, 0.0, 0, False, "non-finite or flat step")
    full_step = step_dir / torch.sqrt(shs / max_kl)

    step_size = 1.0
    for i in range(ls_max_steps):
        set_flat_(params, old - step_size * full_step)
        new_loss, new_kl = loss_and_kl(False)
        new_loss, new_kl = float(new_loss.detach()), float(new_kl.detach())
        if new_loss < loss_before and new_kl <= max_kl and math.isfinite(new_loss):
            return TRPOResult(loss_before, new_loss, new_kl, i + 1, True)
        step_size *= ls_backtrack_ratio
    set_flat_(params, old)
    return TRPOResult(loss_before, loss_before, 0.0, ls_max_steps, False, "line search failed")

"""Linear feature baseline (Duan et al. 2016), fitted per task in one batched solve.

Features per step: the observation clipped to ±10, its square, t/100, (t/100)², (t/100)³ and a
constant. Weights solve the ridge problem (FᵀF + c·I) w = Fᵀ R by a Cholesky factorization (the
matrix is symmetric positive definite for c > 0); a task whose factorization fails or whose
solution is not finite is retried with c ×10 up to ``max_tries`` times, then gets a zero
baseline (plain returns as advantages) rather than NaNs.

Cholesky rather than a least-squares driver: these systems are badly conditioned (most of the
ant's contact-force entries stay zero, so condition numbers reach 1e12), and there MKL's default
``lstsq`` driver (``gelsy``, pivoted QR) returned other last bits for the same input on about 5
to 20 of 100 calls with one thread, which made evaluations and trainings unrepeatable.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class BaselineFit:
    """Predicted values and what the fit had to do to get them."""

    values: Tensor
    retries: int
    fallbacks: int


def features(obs: Tensor, mask: Tensor) -> Tensor:
    """rllab's baseline features for ``obs`` of shape [T, ..., obs_dim]; zero where masked."""
    T = obs.shape[0]
    o = obs.clamp(-10.0, 10.0)
    shape = (T,) + (1,) * (obs.dim() - 1)
    al = (torch.arange(T, dtype=obs.dtype, device=obs.device) / 100.0).view(shape).expand(*obs.shape[:-1], 1)
    feats = torch.cat([o, o * o, al, al**2, al**3, torch.ones_like(al)], dim=-1)
    return feats * mask.unsqueeze(-1)


def fit_predict(
    obs: Tensor,
    returns: Tensor,
    mask: Tensor,
    task_dim: int = 1,
    reg_coeff: float = 1e-5,
    max_tries: int = 5,
) -> BaselineFit:
    """Fit one baseline per task on (obs, returns) and predict the values of the same steps.

    ``obs`` is [T, N, E, obs_dim], ``returns`` and ``mask`` are [T, N, E]; the task dimension
    ``N`` is at ``task_dim``. Computed in float64 and returned in ``returns``' dtype.
    """
    if not reg_coeff > 0:
        raise ValueError(f"reg_coeff must be > 0 (FᵀF + c·I is then positive definite), got {reg_coeff}")
    out_dtype = returns.dtype
    obs, returns, mask = obs.detach().double(), returns.detach().double(), mask.detach().double()
    feats = features(obs, mask).movedim(task_dim, 0)  # [N, T, E, D]
    n_tasks, dim = feats.shape[0], feats.shape[-1]
    F = feats.reshape(n_tasks, -1, dim)
    R = (returns * mask).movedim(task_dim, 0).reshape(n_tasks, -1, 1)
    FtF, FtR = F.transpose(1, 2) @ F, F.transpose(1, 2) @ R
    eye = torch.eye(dim, dtype=F.dtype, device=F.device)

    weights = torch.zeros(n_tasks, dim, 1, dtype=F.dtype, device=F.device)
    # Non-finite data cannot be fixed by regularising: those tasks go straight to a zero baseline.
    todo = torch.isfinite(FtF).all(dim=(1, 2)) & torch.isfinite(FtR).all(dim=(1, 2))
    solved = torch.zeros(n_tasks, dtype=torch.bool, device=F.device)
    retries, reg = 0, reg_coeff
    for attempt in range(max_tries):
        idx = todo.nonzero().squeeze(-1)
        if idx.numel() == 0:
            break
        if attempt > 0:
            retries += idx.numel()
        chol, info = torch.linalg.cholesky_ex(FtF[idx] + reg * eye)
        sol = torch.cholesky_solve(FtR[idx], chol)
        ok = (info == 0) & torch.isfinite(sol).all(dim=(1, 2))
        weights[idx[ok]] = sol[ok]
        solved[idx[ok]] = True
        todo[idx[ok]] = False
        reg *= 10.0
    fallbacks = int((~solved).sum())  # these keep zero weights: a zero baseline

    values = (F @ weights).reshape(feats.shape[:-1]).movedim(0, task_dim)
    values = torch.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0) * mask
    return BaselineFit(values=values.to(out_dtype), retries=retries, fallbacks=fallbacks)

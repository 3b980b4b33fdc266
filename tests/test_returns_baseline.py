"""Discounted returns, GAE and the linear feature baseline against hand-computed values."""

import math

import pytest
import torch

from metarl import value_baseline
from metarl.returns import discounted_returns, gae, masked_normalize


def test_discounted_returns_by_hand():
    rewards = torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]])  # 2nd episode ends after 2 steps
    out = discounted_returns(rewards, mask, gamma=0.5)
    expected = torch.tensor([[1 + 0.5 * 2 + 0.25 * 3, 1 + 0.5 * 2], [2 + 0.5 * 3, 2.0], [3.0, 0.0]])
    torch.testing.assert_close(out, expected)


def test_gae_by_hand():
    r = torch.tensor([1.0, 2.0, 3.0])
    v = torch.tensor([0.5, 1.0, 2.0])
    m = torch.ones(3)
    g, lam = 0.9, 0.5
    d2 = 3.0 - 2.0  # no bootstrap after the last step
    d1 = 2.0 + g * 2.0 - 1.0
    d0 = 1.0 + g * 1.0 - 0.5
    a2 = d2
    a1 = d1 + g * lam * a2
    a0 = d0 + g * lam * a1
    torch.testing.assert_close(gae(r, v, m, g, lam), torch.tensor([a0, a1, a2]))


def test_gae_lambda_one_is_returns_minus_values_and_stops_at_episode_end():
    r = torch.tensor([[1.0], [2.0], [0.0]])
    v = torch.tensor([[0.3], [0.7], [5.0]])  # the value past the end must be ignored
    m = torch.tensor([[1.0], [1.0], [0.0]])
    adv = gae(r, v, m, gamma=0.99, lam=1.0)
    ret = discounted_returns(r, m, gamma=0.99)
    torch.testing.assert_close(adv, (ret - v) * m)


def test_masked_normalize_ignores_masked_entries():
    x = torch.tensor([1.0, 3.0, 100.0])
    m = torch.tensor([1.0, 1.0, 0.0])
    out = masked_normalize(x, m, dims=(0,))
    torch.testing.assert_close(out, torch.tensor([-1.0, 1.0, 0.0]), atol=1e-6, rtol=0)


def test_baseline_features_by_hand():
    obs = torch.tensor([[[2.0]], [[-20.0]]])  # [T=2, E=1, obs_dim=1]
    mask = torch.ones(2, 1)
    f = value_baseline.features(obs, mask)
    torch.testing.assert_close(f[0, 0], torch.tensor([2.0, 4.0, 0.0, 0.0, 0.0, 1.0]))
    # clipped to ±10; t/100 = 0.01
    torch.testing.assert_close(f[1, 0], torch.tensor([-10.0, 100.0, 0.01, 0.01**2, 0.01**3, 1.0]))


def test_baseline_recovers_a_linear_function_of_the_features_per_task():
    torch.manual_seed(0)
    T, N, E, D = 30, 3, 4, 2
    obs = torch.randn(T, N, E, D, dtype=torch.float64)
    mask = torch.ones(T, N, E, dtype=torch.float64)
    mask[20:, 1] = 0.0  # task 1 has shorter episodes
    f = value_baseline.features(obs, mask)
    w = torch.randn(N, f.shape[-1], dtype=torch.float64)  # a different target for each task
    returns = torch.einsum("tned,nd->tne", f, w)
    fit = value_baseline.fit_predict(obs, returns, mask, task_dim=1, reg_coeff=1e-10)
    torch.testing.assert_close(fit.values, returns * mask, atol=1e-6, rtol=0)
    assert fit.retries == 0 and fit.fallbacks == 0


def test_baseline_nan_guard_falls_back_to_zero_for_the_broken_task_only():
    T, N, E, D = 10, 2, 3, 2
    obs = torch.randn(T, N, E, D)
    mask = torch.ones(T, N, E)
    returns = torch.randn(T, N, E)
    returns[:, 0] = math.nan
    fit = value_baseline.fit_predict(obs, returns, mask, task_dim=1)
    assert torch.isfinite(fit.values).all()
    assert torch.all(fit.values[:, 0] == 0)
    assert fit.values[:, 1].abs().sum() > 0
    assert fit.fallbacks == 1 and fit.retries == 0  # NaN data: no point retrying


def test_baseline_retries_with_more_regularisation_when_the_factorization_fails(monkeypatch):
    calls, diagonals = [], []
    real = torch.linalg.cholesky_ex

    def flaky(A):
        calls.append(A.shape[0])
        diagonals.append(A.diagonal(dim1=1, dim2=2)[:, -1])  # the constant feature's: E·T + c per task
        chol, info = real(A)
        if len(calls) == 1:  # the first attempt finds the first task's matrix not positive definite
            info = info.clone()
            info[0] = 3
        return chol, info

    monkeypatch.setattr(torch.linalg, "cholesky_ex", flaky)
    obs, mask, returns = torch.randn(8, 2, 3, 1), torch.ones(8, 2, 3), torch.randn(8, 2, 3)
    fit = value_baseline.fit_predict(obs, returns, mask, task_dim=1)
    assert calls == [2, 1] and fit.retries == 1 and fit.fallbacks == 0
    torch.testing.assert_close(diagonals[0] - 24.0, torch.full((2,), 1e-5, dtype=torch.float64))
    torch.testing.assert_close(diagonals[1] - 24.0, torch.tensor([1e-4], dtype=torch.float64))
    assert torch.isfinite(fit.values).all() and (fit.values.abs().sum(dim=(0, 2)) > 0).all()


def test_baseline_retries_when_the_solution_is_not_finite(monkeypatch):
    # A factorization can report success and still solve to NaN (cuSOLVER on NaN input, say).
    calls = []
    real = torch.cholesky_solve

    def solve(B, L):
        calls.append(B.shape[0])
        sol = real(B, L)
        if len(calls) == 1:
            sol = sol.clone()
            sol[1] = math.nan
        return sol

    monkeypatch.setattr(torch, "cholesky_solve", solve)
    obs, mask, returns = torch.randn(8, 2, 3, 1), torch.ones(8, 2, 3), torch.randn(8, 2, 3)
    fit = value_baseline.fit_predict(obs, returns, mask, task_dim=1)
    assert calls == [2, 1] and fit.retries == 1 and fit.fallbacks == 0
    assert torch.isfinite(fit.values).all() and (fit.values.abs().sum(dim=(0, 2)) > 0).all()


def test_baseline_refuses_a_regulariser_that_is_not_positive():
    obs, mask, returns = torch.randn(4, 1, 2, 1), torch.ones(4, 1, 2), torch.randn(4, 1, 2)
    with pytest.raises(ValueError, match="reg_coeff must be > 0"):
        value_baseline.fit_predict(obs, returns, mask, task_dim=1, reg_coeff=0.0)


def test_baseline_gives_up_after_max_tries_with_a_zero_baseline(monkeypatch):
    real = torch.linalg.cholesky_ex

    def never(A):
        chol, info = real(A)
        return chol, torch.ones_like(info)

    monkeypatch.setattr(torch.linalg, "cholesky_ex", never)
    obs, mask, returns = torch.randn(8, 2, 3, 1), torch.ones(8, 2, 3), torch.randn(8, 2, 3)
    fit = value_baseline.fit_predict(obs, returns, mask, task_dim=1, max_tries=3)
    assert fit.fallbacks == 2 and fit.retries == 4  # both tasks, attempts 2 and 3
    assert torch.all(fit.values == 0)


def test_baseline_fit_repeats_itself_to_the_bit_on_a_badly_conditioned_problem():
    """Unused observation entries (the ant's contact forces are zero) and nearly collinear ones
    make FᵀF + c·I badly conditioned; MKL's pivoted-QR least squares then varied in the last
    bits from call to call (5 and 6 different results in two trials of 100 calls, one thread)."""
    g = torch.Generator().manual_seed(0)
    T, N, E, D = 50, 4, 10, 40
    obs = torch.randn(T, N, E, D, generator=g, dtype=torch.float64)
    obs[..., 20:] = 0.0
    obs[..., 10:20] = obs[..., :10] * 1e-3
    mask = torch.ones(T, N, E, dtype=torch.float64)
    returns = torch.randn(T, N, E, generator=g, dtype=torch.float64)
    first = value_baseline.fit_predict(obs, returns, mask, task_dim=1).values
    for _ in range(100):
        again = value_baseline.fit_predict(obs.clone(), returns.clone(), mask.clone(), task_dim=1)
        assert torch.equal(again.values, first)
    # ... and still fits: the residual is as small as least squares' on the same features.
    f = value_baseline.features(obs, mask).movedim(1, 0).reshape(N, -1, 2 * D + 4)
    target = returns.movedim(1, 0).reshape(N, -1, 1)
    best = f @ torch.linalg.lstsq(f, target, driver="gelsd").solution
    ours = first.movedim(1, 0).reshape(N, -1, 1)
    assert ((ours - target).norm() - (best - target).norm()).abs() < 1e-6 * target.norm()

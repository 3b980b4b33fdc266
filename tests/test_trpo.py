"""TRPO: the trust region holds, the surrogate never worsens, rejected steps restore θ."""

import torch

from metarl.optim.trpo import conjugate_gradient, flat, trpo_step
from tests.conftest import tiny_maml


def test_conjugate_gradient_solves_spd_system():
    torch.manual_seed(0)
    A = torch.randn(6, 6, dtype=torch.float64)
    A = A @ A.T + 6 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, dtype=torch.float64)
    x = conjugate_gradient(lambda v: A @ v, b, iters=20)
    torch.testing.assert_close(A @ x, b)


def test_maml_trpo_step_respects_max_kl_and_improves_surrogate():
    algo, batches, valid = tiny_maml()
    params = list(algo.policy.parameters())
    before = flat([p.detach() for p in params]).clone()
    loss_and_kl = algo.meta_objective(batches, valid)
    result = trpo_step(params, loss_and_kl, max_kl=0.01)
    assert result.accepted
    new_loss, new_kl = loss_and_kl(False)
    assert float(new_kl.detach()) <= 0.01
    assert float(new_loss.detach()) < result.loss_before
    assert abs(float(new_loss.detach()) - result.loss_after) < 1e-12
    assert not torch.equal(before, flat([p.detach() for p in params]))


def _quadratic_problem(loss_extra, kl_extra):
    theta = torch.nn.Parameter(torch.tensor([0.3, -0.2], dtype=torch.float64))
    theta0 = theta.detach().clone()
    g = torch.tensor([1.0, 2.0], dtype=torch.float64)

    def loss_and_kl(create_graph):
        d = theta - theta0
        return g @ d + loss_extra(d), 0.5 * (d @ d) + kl_extra(d)

    return theta, theta0, loss_and_kl


def test_step_that_worsens_the_surrogate_is_rejected_and_params_restored():
    # The surrogate's slope promises improvement, but every move off θ0 costs +10.
    theta, theta0, f = _quadratic_problem(lambda d: 10 * torch.tanh(1e8 * (d @ d)), lambda d: 0.0 * d.sum())
    result = trpo_step([theta], f, max_kl=0.01, ls_max_steps=5)
    assert not result.accepted and result.reason == "line search failed"
    assert torch.equal(theta.detach(), theta0)


def test_step_that_breaks_the_trust_region_is_rejected_and_params_restored():
    # The KL's curvature at θ0 looks harmless, but any move has KL ≥ 1 > max_kl.
    theta, theta0, f = _quadratic_problem(lambda d: 0.0 * d.sum(), lambda d: torch.tanh(1e12 * (d @ d) ** 2))
    result = trpo_step([theta], f, max_kl=0.01, ls_max_steps=5)
    assert not result.accepted
    assert torch.equal(theta.detach(), theta0)


def test_accepted_step_on_a_quadratic_lands_on_the_trust_region_boundary():
    theta, theta0, f = _quadratic_problem(lambda d: 0.0 * d.sum(), lambda d: 0.0 * d.sum())
    result = trpo_step([theta], f, max_kl=0.01, cg_damping=0.0)
    assert result.accepted and result.ls_steps == 1
    d = theta.detach() - theta0
    torch.testing.assert_close(0.5 * (d @ d), torch.tensor(0.01, dtype=torch.float64))


def test_curvature_from_all_tasks_equals_the_default_step():
    results = []
    for use_subset in (False, True):
        algo, batches, valid = tiny_maml()
        old = algo.replay_inner_loop(algo.policy.params(), batches, create_graph=False)
        curvature = None
        if use_subset:  # "all tasks" through the subset path must give the same step
            curvature = algo.curvature_kl(batches, valid, old, torch.arange(3))
        params = list(algo.policy.parameters())
        trpo_step(params, algo.meta_objective(batches, valid), max_kl=0.01, curvature_kl=curvature)
        results.append(flat([p.detach() for p in params]))
    torch.testing.assert_close(results[0], results[1], rtol=1e-6, atol=1e-9)


def test_curvature_from_a_task_subset_still_respects_max_kl():
    algo, batches, valid = tiny_maml()
    old = algo.replay_inner_loop(algo.policy.params(), batches, create_graph=False)
    curvature = algo.curvature_kl(batches, valid, old, torch.tensor([0, 2]))
    loss_and_kl = algo.meta_objective(batches, valid)
    result = trpo_step(list(algo.policy.parameters()), loss_and_kl, max_kl=0.01, curvature_kl=curvature)
    loss, kl = loss_and_kl(False)
    assert result.accepted and float(kl.detach()) <= 0.01
    assert float(loss.detach()) < result.loss_before

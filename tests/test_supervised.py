"""Few-shot supervised learning on the shared inner step: sinusoids, N-way K-shot episodes,
MAML / FOMAML / Reptile / iMAML, and iMAML's implicit gradient against the closed form."""

import json

import numpy as np
import pytest
import torch
import yaml

from metarl.cli import main
from metarl.supervised import (
    FewShotBatch,
    NWayKShot,
    Regressor,
    SinusoidTasks,
    imaml_task_gradient,
    inner_loop,
    solve_proximal,
)


def test_sinusoid_tasks_follow_the_paper_distribution():
    family = SinusoidTasks()
    tasks = family.sample_tasks(2000, np.random.default_rng(0))
    amps = np.array([t.amplitude for t in tasks])
    phases = np.array([t.phase for t in tasks])
    assert amps.min() >= 0.1 and amps.max() <= 5 and phases.min() >= 0 and phases.max() <= np.pi
    batch = family.batch(tasks[:3], 5, 7, np.random.default_rng(1))
    assert batch.support_x.shape == (3, 5, 1) and batch.query_y.shape == (3, 7, 1)
    t = tasks[0]
    expected = t.amplitude * torch.sin(batch.support_x[0] - t.phase)
    torch.testing.assert_close(batch.support_y[0], expected)


def test_n_way_k_shot_episodes_relabel_classes_and_never_overlap():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(300, 4, generator=g)
    labels = torch.arange(300) % 10  # 10 classes of 30
    features[:, 0] = labels.float()  # the class is readable from feature 0
    episodes = NWayKShot(features, labels, n_way=5, k_shot=2, k_query=3).sample(4, np.random.default_rng(0))
    assert episodes.support_x.shape == (4, 10, 4) and episodes.query_y.shape == (4, 15)
    for i in range(4):
        assert sorted(episodes.support_y[i].tolist()) == sorted([c for c in range(5) for _ in range(2)])
        # one original class per new label, the same in support and query
        for new in range(5):
            s = set(episodes.support_x[i][episodes.support_y[i] == new][:, 0].tolist())
            q = set(episodes.query_x[i][episodes.query_y[i] == new][:, 0].tolist())
            assert len(s | q) == 1
        rows = {tuple(r.tolist()) for r in episodes.support_x[i]}
        assert not rows & {tuple(r.tolist()) for r in episodes.query_x[i]}
    with pytest.raises(ValueError, match="needs 11 classes"):
        NWayKShot(features, labels, n_way=11, k_shot=2, k_query=3)


def test_imaml_implicit_gradient_matches_the_closed_form_on_a_quadratic_inner_problem():
    torch.manual_seed(0)
    model = Regressor(3, 1, hidden_sizes=[]).double()  # linear: the support loss is quadratic
    lam = 2.0
    xs, ys = torch.randn(1, 8, 3, dtype=torch.float64), torch.randn(1, 8, 1, dtype=torch.float64)
    xq, yq = torch.randn(1, 6, 3, dtype=torch.float64), torch.randn(1, 6, 1, dtype=torch.float64)
    batch = FewShotBatch(xs, ys, xq, yq)

    # φ*(θ) = argmin_φ mean((Xφ − y)²) + λ/2 ‖φ − θ‖², in closed form, differentiable in θ
    X = torch.cat([xs[0], torch.ones(8, 1, dtype=torch.float64)], 1)  # weights then bias
    H = 2 * X.T @ X / 8
    theta = torch.cat([model.net[0].weight.detach().flatten(), model.net[0].bias.detach()]).requires_grad_()
    phi = torch.linalg.solve(
        H + lam * torch.eye(4, dtype=torch.float64), lam * theta + 2 * X.T @ ys[0, :, 0] / 8
    )
    Xq = torch.cat([xq[0], torch.ones(6, 1, dtype=torch.float64)], 1)
    query = ((Xq @ phi - yq[0, :, 0]) ** 2).mean()
    (exact,) = torch.autograd.grad(query, theta)

    params = {"net.0.weight": phi[:3].detach().view(1, 3), "net.0.bias": phi[3:].detach()}
    grads, _ = imaml_task_gradient(model, params, batch, 0, lam, cg_iters=10)
    implicit = torch.cat([grads[0].flatten(), grads[1]])
    torch.testing.assert_close(implicit, exact, atol=1e-9, rtol=1e-7)


def test_the_proximal_inner_solve_converges_where_a_fixed_step_size_would_diverge():
    torch.manual_seed(0)
    model = Regressor(3, 1, hidden_sizes=[]).double()  # linear: each task's problem is quadratic
    lam, k = 5.0, 8
    x = torch.randn(2, k, 3, dtype=torch.float64)
    x[1] *= 6.0  # task 1's curvature is about 36 times task 0's
    y = torch.randn(2, k, 1, dtype=torch.float64)
    theta = {n: p.detach() for n, p in model.named_parameters()}
    lr = 0.05  # stable for task 0, far above 2 / (largest eigenvalue) for task 1
    phi, rate = solve_proximal(model, theta, x, y, lr, 300, lam)

    flat_theta = torch.cat([theta["net.0.weight"].flatten(), theta["net.0.bias"]])
    for i in range(2):
        X = torch.cat([x[i], torch.ones(k, 1, dtype=torch.float64)], 1)
        H = 2 * X.T @ X / k
        exact = torch.linalg.solve(
            H + lam * torch.eye(4, dtype=torch.float64), lam * flat_theta + 2 * X.T @ y[i, :, 0] / k
        )
        found = torch.cat([phi["net.0.weight"][i].flatten(), phi["net.0.bias"][i]])
        torch.testing.assert_close(found, exact, atol=1e-8, rtol=1e-8)
        assert (2 / torch.linalg.eigvalsh(H + lam * torch.eye(4, dtype=torch.float64)).max() < lr) == (i == 1)
    assert rate[0] == lr and rate[1] < lr  # only the stiff task's step size backed off
    # Plain gradient steps at the same size blow up on task 1.
    plain = inner_loop(model, theta, x, y, lr, 50, True)
    assert not torch.isfinite(plain["net.0.weight"][1]).all() or plain["net.0.weight"][1].abs().max() > 1e6


@pytest.mark.parametrize("algorithm", ["maml", "fomaml", "reptile", "imaml", "pretrained"])
def test_sinusoid_trains_with_metarl_train_and_evaluates(tmp_path, capsys, algorithm):
    run = tmp_path / "run"
    config = {"env": "supervised/Sinusoid", "algorithm": algorithm, "iterations": 30, "meta_batch_size": 5}
    config["outer" if algorithm != "reptile" else "reptile"] = (
        {"lr": 0.01} if algorithm != "reptile" else {"epsilon": 0.1}
    )
    path = tmp_path / f"{algorithm}.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path), "--out", str(run), "--no-progress"]) == 0
    out = tmp_path / "eval.json"
    assert (
        main(["evaluate", str(run), "--tasks", "20", "--steps", "3", "--shots", "5", "--json", str(out)]) == 0
    )
    result = json.loads(out.read_text())
    assert result["method"] == algorithm and result["k_shot"] == 5 and len(result["mean_mse"]) == 4
    assert all(np.isfinite(result["mean_mse"]))


def test_rl_only_and_supervised_only_algorithms_are_refused_with_one_line(tmp_path, capsys):
    args = ["train", "experiments/sinusoid.yaml", "--out", str(tmp_path / "a"), "--set", "algorithm=promp"]
    assert main(args) == 2
    assert "must be one of maml, fomaml, reptile, imaml, pretrained on a supervised few-shot family" in (
        capsys.readouterr().err
    )
    args = [
        "train",
        "experiments/navigation_2d.yaml",
        "--out",
        str(tmp_path / "b"),
        "--set",
        "algorithm=imaml",
    ]
    assert main(args) == 2
    assert "is a supervised learner" in capsys.readouterr().err


def _imaml(**kwargs):
    import metarl

    settings = {"meta_batch_size": 3, "hidden_sizes": [8], "k_shot": 5, "k_query": 5, "seed": 0}
    settings.update({"inner_steps": 6, "inner_lr": 0.02, "imaml_lambda": 4.0, **kwargs})
    return metarl.IMAML("supervised/Sinusoid", **settings)


def test_imaml_adapts_evaluates_and_validates_by_its_proximal_steps():
    from metarl.learners.base import ADAPT_STREAM
    from metarl.supervised import task_losses

    learner = _imaml()
    assert learner.adaptation == "proximal" and learner.best_by == "validation/proximal"
    family = SinusoidTasks()
    tasks = family.sample_tasks(4, np.random.default_rng(3))
    batch = family.batch(tasks, 5, 9, np.random.default_rng(4))
    model, steps = learner.policy, 6
    theta = {n: v.detach() for n, v in model.params().items()}
    traced = learner._losses_after_steps(model, batch, steps, 0.02, "proximal")
    assert traced.shape == (steps + 1, 4)
    for k in range(steps + 1):  # the loss after step k is that of the solve stopped after k steps
        phi, _ = solve_proximal(model, theta, batch.support_x, batch.support_y, 0.02, k, 4.0)
        expected = task_losses(model, phi, batch.query_x, batch.query_y).detach().numpy()
        np.testing.assert_allclose(traced[k], expected, rtol=1e-6)
    # From φ = θ the proximal term has no gradient: the first step is MAML's plain SGD step.
    plain = learner._losses_after_steps(model, batch, steps, 0.02, "sgd")
    np.testing.assert_allclose(traced[:2], plain[:2], rtol=1e-6)
    assert not np.allclose(traced[steps], plain[steps])  # later, λ pulls φ back towards θ

    default, sgd = (
        learner.evaluate(num_tasks=5, steps=3),
        learner.evaluate(num_tasks=5, steps=3, adaptation="sgd"),
    )
    assert default["adaptation"] == "proximal" and default["imaml_lambda"] == 4.0
    assert sgd["adaptation"] == "sgd" and "imaml_lambda" not in sgd
    assert default["mean_mse"][:2] == pytest.approx(sgd["mean_mse"][:2], rel=1e-6)

    validation = learner.validate()
    rng, _ = learner._validation_rng()  # the validation's own support and query sets
    held = family.batch(learner.validation_tasks(), 5, family.eval_k_query, rng)
    for kind, check in (("proximal", True), ("sgd", False)):
        expected = learner._losses_after_steps(model, held, steps, 0.02, kind)[-1].mean()
        assert (validation["validation/score"] == pytest.approx(-expected, rel=1e-6)) == check, kind

    task = tasks[0]
    adapted = learner.adapt(task, steps=4)
    support = family.batch([task], 5, 1, np.random.default_rng([0, ADAPT_STREAM]))
    phi, _ = solve_proximal(model, theta, support.support_x, support.support_y, 0.02, 4, 4.0)
    for name, value in adapted.params.items():
        torch.testing.assert_close(value, phi[name][0])
    with pytest.raises(Exception, match="adaptation must be one of sgd, proximal, got 'newton'"):
        learner.evaluate(num_tasks=2, steps=1, adaptation="newton")


def test_a_resumed_imaml_run_scored_after_sgd_steps_starts_its_best_afresh(tmp_path):
    import metarl

    learner = _imaml(validation_every=1)
    learner.learn(1)
    assert np.isfinite(learner.best_return)
    state = learner.state_dict()
    state["best_by"] = "validation"  # a checkpoint from when validation took plain SGD steps
    fresh = _imaml(validation_every=1)
    fresh.load_state_dict(state)
    assert fresh.best_return == -float("inf")
    fresh.load_state_dict(learner.state_dict())
    assert fresh.best_return == learner.best_return
    learner.save(tmp_path / "imaml.pt")
    assert metarl.load(tmp_path / "imaml.pt").best_by == "validation/proximal"


def test_evaluate_adaptation_flag_scores_either_way_and_refuses_rl_runs(tmp_path, capsys):
    run = tmp_path / "imaml"
    config = {"env": "supervised/Sinusoid", "algorithm": "imaml", "iterations": 2, "meta_batch_size": 3}
    config["inner"] = {"steps": 5, "lr": 0.01}
    path = tmp_path / "imaml.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path), "--out", str(run), "--no-progress"]) == 0
    for adaptation in ("sgd", "proximal"):
        out = tmp_path / f"{adaptation}.json"
        args = [
            "evaluate",
            str(run),
            "--tasks",
            "4",
            "--steps",
            "2",
            "--adaptation",
            adaptation,
            "--json",
            str(out),
        ]
        assert main(args) == 0
        assert json.loads(out.read_text())["adaptation"] == adaptation
    assert "proximal steps of 0.01" in capsys.readouterr().out
    assert main(["compare", str(tmp_path / "sgd.json"), str(tmp_path / "proximal.json")]) == 0
    rows = [line.split("  ")[0] for line in capsys.readouterr().out.splitlines()[1:3]]
    assert rows == ["imaml", "imaml (proximal steps)"]  # the table says which steps scored each row

    nav = tmp_path / "nav"
    nav_args = ["--set", "iterations=1", "--set", "meta_batch_size=2", "--set", "episodes_per_task=2"]
    nav_args += ["--set", "horizon=5", "--set", "validation.every=0"]
    assert (
        main(["train", "experiments/navigation_2d.yaml", "--out", str(nav), "--no-progress", *nav_args]) == 0
    )
    capsys.readouterr()
    assert main(["evaluate", str(nav), "--adaptation", "sgd"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--adaptation sgd applies to few-shot (supervised/) runs" in err and "\n" not in err

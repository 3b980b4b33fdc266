"""metarl plot and metarl compare."""

import json

import numpy as np
import pytest

from metarl.cli import main


def _result(tmp_path, method, returns, env="metarl/Navigation2D-v0"):
    path = tmp_path / f"{method}.json"
    path.write_text(
        json.dumps(
            {
                "env_id": env,
                "method": method,
                "num_tasks": 40,
                "steps": list(range(len(returns))),
                "mean_return": returns,
                "stderr": [0.5] * len(returns),
            }
        )
    )
    return path


def test_compare_prints_every_method_with_normalized_scores(tmp_path, capsys):
    paths = [
        _result(tmp_path, "maml_trpo", [-40.0, -12.0, -8.0]),
        _result(tmp_path, "random", [-50.0, -45.0, -40.0]),
        _result(tmp_path, "oracle", [-5.0]),
    ]
    assert main(["compare", *map(str, paths)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == [
        "method",
        "step",
        "0",
        "step",
        "1",
        "step",
        "2",
        "score",
        "0",
        "score",
        "1",
        "score",
        "2",
    ]
    maml = next(line for line in lines if line.startswith("maml_trpo"))
    # (R_1 − R_random(0)) / (R_oracle − R_random(0)) = (−12 + 50) / 45
    assert "-12.00 ± 0.50" in maml and f"{38 / 45:.2f}" in maml
    assert any(line.startswith("random") for line in lines) and any(
        line.startswith("oracle") for line in lines
    )


def test_compare_warns_when_results_were_scored_with_different_env_arguments(tmp_path, capsys):
    paths = [
        _result(tmp_path, "maml_trpo", [-40.0, -12.0]),
        _result(tmp_path, "random", [-50.0, -45.0]),
        _result(tmp_path, "oracle", [-5.0]),
    ]
    assert main(["compare", *map(str, paths)]) == 0
    assert "warning" not in capsys.readouterr().out  # nothing recorded: unknown is not different

    def record(path, env_kwargs):
        result = json.loads(path.read_text())
        path.write_text(json.dumps({**result, "env_kwargs": env_kwargs}))

    record(paths[0], {"healthy_reward": 1.0})
    record(paths[1], {})
    assert main(["compare", *map(str, paths)]) == 0
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning")]
    assert warnings == [
        "warning: scored with different env arguments, not comparable: "
        '{"healthy_reward": 1.0} (maml_trpo); {} (random)'
    ]
    record(paths[1], {"healthy_reward": 1})  # the same arguments everywhere recorded: no warning
    assert main(["compare", *map(str, paths)]) == 0
    assert "warning" not in capsys.readouterr().out
    record(paths[1], {"healthy_reward": True})  # a bool is not the number 1
    assert main(["compare", *map(str, paths)]) == 0
    assert "warning" in capsys.readouterr().out


def test_scores_that_round_to_zero_print_without_a_minus_sign(tmp_path, capsys):
    paths = [
        _result(tmp_path, "pretrained", [-50.1, -50.2]),
        _result(tmp_path, "random", [-50.0, -49.0]),
        _result(tmp_path, "oracle", [50.0]),
    ]
    assert main(["compare", *map(str, paths)]) == 0
    pretrained = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("pretrained"))
    # (−50.1 + 50) / 100 = −0.001 rounds to zero; a real negative score keeps its sign
    assert pretrained.split()[-2:] == ["0.00", "0.00"] and "-0.00" not in pretrained
    paths[0] = _result(tmp_path, "pretrained", [-52.0, -50.0])
    assert main(["compare", *map(str, paths)]) == 0
    assert "-0.02" in capsys.readouterr().out


def test_compare_without_references_has_no_scores_and_bad_files_are_one_line_errors(tmp_path, capsys):
    assert main(["compare", str(_result(tmp_path, "fomaml", [-30.0, -20.0]))]) == 0
    assert "score" not in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["compare", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "is not JSON" in err and len(err.splitlines()) == 1
    assert main(["compare", str(tmp_path / "missing.json")]) == 2


def test_plot_writes_a_png_of_results_and_training_curves(tmp_path, capsys):
    run = tmp_path / "run"
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "env: metarl/Navigation2D-v0\niterations: 2\nmeta_batch_size: 2\nepisodes_per_task: 2\nhorizon: 8\n"
    )
    assert main(["train", str(config), "--out", str(run), "--no-progress"]) == 0
    out = tmp_path / "fig" / "nav.png"
    paths = [_result(tmp_path, "maml_trpo", [-40.0, -12.0]), _result(tmp_path, "random", [-50.0, -45.0])]
    assert main(["plot", *map(str, paths), str(run), "--out", str(out)]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert main(["plot", str(tmp_path), "--out", str(out)]) == 2  # a directory that is no run


def _named(path, method, returns):
    """An evaluate result of ``method`` in the file ``path`` (whose stem need not be the method)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    steps = list(range(len(returns)))
    record = {"env_id": "metarl/Navigation2D-v0", "method": method, "num_tasks": 40, "steps": steps}
    path.write_text(json.dumps({**record, "mean_return": returns, "stderr": [0.5] * len(returns)}))
    return path


def test_results_sharing_a_method_get_their_own_rows_labels_and_scores(tmp_path, capsys):
    from metarl.plotting import compare_table, load_results, normalized_scores

    paths = [
        _named(tmp_path / "maml_trpo.json", "maml_trpo", [-40.0, -12.0]),
        _named(tmp_path / "maml_trpo_500it.json", "maml_trpo", [-41.0, -20.0]),
        _named(tmp_path / "run2" / "eval.json", "maml_trpo", [-42.0, -30.0]),
        _named(tmp_path / "random.json", "random", [-50.0, -45.0]),
        _named(tmp_path / "oracle.json", "oracle", [-5.0]),
    ]
    results = load_results(paths)
    # every score from the row's own returns: (R_k + 50) / 45
    expected = [[10 / 45, 38 / 45], [9 / 45, 30 / 45], [8 / 45, 20 / 45], [0.0, 5 / 45], [1.0]]
    assert normalized_scores(results) == expected  # exact: the same float operations
    rows = compare_table(results).splitlines()[1:6]
    labels = ["maml_trpo", "maml_trpo_500it", "maml_trpo (eval)", "random", "oracle"]
    for row, label, scores in zip(rows, labels, expected, strict=True):
        assert row.startswith(f"{label}  ") and row.split("  ")[0] == label
        assert row.split()[-len(scores) :] == [f"{s:.2f}" for s in scores]
    # the command computes the same scores row by row
    assert main(["compare", *map(str, paths)]) == 0
    out = capsys.readouterr().out.splitlines()[1:6]
    for row, scores in zip(out, expected, strict=True):
        assert row.split()[-len(scores) :] == [f"{s:.2f}" for s in scores]


def test_several_random_results_use_the_file_named_random_or_are_refused(tmp_path, capsys):
    from metarl.plotting import compare_table, load_results

    maml = _named(tmp_path / "maml.json", "maml_trpo", [-40.0, -12.0])
    oracle = _named(tmp_path / "oracle.json", "oracle", [-5.0])
    seed1 = _named(tmp_path / "random_seed1.json", "random", [-60.0, -55.0])
    random = _named(tmp_path / "random.json", "random", [-50.0, -45.0])
    table = compare_table(load_results([maml, seed1, random, oracle]))
    assert table.splitlines()[1].split()[-2:] == ["0.22", f"{38 / 45:.2f}"]  # against random.json
    assert table.endswith("; random = random (of 2 random results)")
    seed2 = _named(tmp_path / "random_seed2.json", "random", [-70.0, -65.0])
    assert main(["compare", str(maml), str(seed1), str(seed2), str(oracle)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "2 results are random" in err
    assert "compare a single random result, or name the one to use random.json" in err


def test_plot_legends_tell_results_sharing_a_method_apart(tmp_path, monkeypatch):
    import matplotlib.figure

    from metarl.plotting import plot

    legends = []
    monkeypatch.setattr(
        matplotlib.figure.Figure,
        "savefig",
        lambda fig, *a, **k: legends.append(fig.axes[0].get_legend_handles_labels()[1]),
    )
    paths = [
        _named(tmp_path / "maml_trpo.json", "maml_trpo", [-40.0, -12.0]),
        _named(tmp_path / "maml_trpo_500it.json", "maml_trpo", [-41.0, -20.0]),
        _named(tmp_path / "oracle.json", "oracle", [-5.0]),
    ]
    plot(paths, tmp_path / "fig.png")
    assert sorted(legends[0]) == ["maml_trpo", "maml_trpo_500it", "oracle"]


def _seed_result(tmp_path, name, method, returns, train_seed):
    path = _result(tmp_path, name, returns)
    data = json.loads(path.read_text())
    data.update(method=method, train_seed=train_seed)
    path.write_text(json.dumps(data))
    return path


def test_compare_seeds_pools_each_methods_training_seeds(tmp_path, capsys):
    paths = [
        _result(tmp_path, "random", [0.0, 1.0]),
        _result(tmp_path, "oracle", [10.0]),
        _seed_result(tmp_path, "maml_s0", "maml_trpo", [2.0, 5.0], 0),
        _seed_result(tmp_path, "maml_s1", "maml_trpo", [4.0, 7.0], 1),
        _seed_result(tmp_path, "maml_s2", "maml_trpo", [3.0, 6.0], 2),
        _seed_result(tmp_path, "pretrained", "pretrained", [1.0, 3.0], 0),
    ]
    assert main(["compare", "--seeds", *map(str, paths)]) == 0
    out = capsys.readouterr().out
    pooled = out[out.index("mean over training seeds") :].splitlines()
    maml = next(line for line in pooled if line.startswith("maml_trpo"))
    # scores after one step: 0.5, 0.7, 0.6 -> mean 0.60, s.e. 0.1 / sqrt(3) = 0.06
    assert maml.split()[1] == "3" and "0.60 ± 0.06" in maml and "0.30 ± 0.06" in maml
    pre = next(line for line in pooled if line.startswith("pretrained"))
    assert pre.split()[1:] == ["1", "0.10", "0.30"]
    assert not any(line.startswith(("random", "oracle")) for line in pooled)


def test_plot_seeds_draws_each_method_once_with_the_spread_across_seeds(tmp_path, monkeypatch):
    import matplotlib.figure

    drawn = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: drawn.append(fig.axes[0]))
    paths = [
        _seed_result(tmp_path, "maml_s0", "maml_trpo", [2.0, 5.0], 0),
        _seed_result(tmp_path, "maml_s1", "maml_trpo", [4.0, 7.0], 1),
        _seed_result(tmp_path, "maml_s2", "maml_trpo", [3.0, 9.0], 2),
        _seed_result(tmp_path, "pretrained", "pretrained", [1.0, 3.0], 0),
    ]
    assert main(["plot", "--seeds", *map(str, paths), "--out", str(tmp_path / "fig.png")]) == 0
    ax = drawn[0]
    assert ax.get_legend_handles_labels()[1] == ["maml_trpo (3 seeds; ± s.e. across seeds)", "pretrained"]
    maml = ax.containers[0]  # the error-bar container: line, caps, bars
    np.testing.assert_allclose(np.asarray(maml.lines[0].get_ydata(), float), [3.0, 7.0])
    bars = maml.lines[2][0].get_segments()
    # s.e. across the three seeds: 1 / sqrt(3) at step 0, 2 / sqrt(3) at step 1
    np.testing.assert_allclose([b[1, 1] - b[0, 1] for b in bars], [2 / np.sqrt(3), 4 / np.sqrt(3)])
    assert ax.get_ylabel() == "mean return (± s.e.)"

    drawn.clear()  # one seed per method: the bars are the s.e. across tasks, and no label claims seeds
    assert main(["plot", "--seeds", *map(str, paths[2:]), "--out", str(tmp_path / "fig.png")]) == 0
    assert drawn[0].get_legend_handles_labels()[1] == ["maml_trpo", "pretrained"]


def test_seeds_pool_each_variant_of_a_learner_apart_by_its_file_names(tmp_path, capsys, monkeypatch):
    import matplotlib.figure

    paths = [
        _result(tmp_path, "random", [0.0, 1.0]),
        _result(tmp_path, "oracle", [10.0]),
        _seed_result(tmp_path, "maml_trpo_seed0", "maml_trpo", [2.0, 5.0], 0),
        _seed_result(tmp_path, "maml_trpo_seed1", "maml_trpo", [4.0, 7.0], 1),
        _seed_result(tmp_path, "maml_trpo_lr0.2_seed0", "maml_trpo", [2.0, 8.0], 0),
        _seed_result(tmp_path, "maml_trpo_lr0.2-seed1", "maml_trpo", [2.0, 9.0], 1),
        # not named after its method: pooled by method, as before
        _seed_result(tmp_path, "mine_seed2", "maml_trpo", [2.0, 6.0], 2),
    ]
    assert main(["compare", "--seeds", *map(str, paths)]) == 0
    pooled = capsys.readouterr().out.split("mean over training seeds")[1].splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in pooled[2:] if line.strip()}
    # scores after one step: 0.5, 0.7, 0.6 for maml_trpo; 0.8, 0.9 for the variant
    assert rows["maml_trpo"][0] == "3" and rows["maml_trpo"][4:7] == ["0.60", "±", "0.06"]
    assert rows["maml_trpo_lr0.2"][0] == "2" and rows["maml_trpo_lr0.2"][4:7] == ["0.85", "±", "0.05"]

    drawn = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: drawn.append(fig.axes[0]))
    assert main(["plot", "--seeds", *map(str, paths[2:]), "--out", str(tmp_path / "fig.png")]) == 0
    assert drawn[0].get_legend_handles_labels()[1] == [
        "maml_trpo (3 seeds; ± s.e. across seeds)",
        "maml_trpo_lr0.2 (2 seeds; ± s.e. across seeds)",
    ]


def test_compare_seeds_refuses_two_results_of_one_training_seed(tmp_path, capsys):
    paths = [
        _seed_result(tmp_path, "a", "maml_trpo", [2.0, 5.0], 0),
        _seed_result(tmp_path, "b", "maml_trpo", [4.0, 7.0], 0),
    ]
    assert main(["compare", "--seeds", *map(str, paths)]) == 2
    err = capsys.readouterr().err.strip()
    assert "training seed 0" in err and len(err.splitlines()) == 1


def test_compare_paper_scores_against_the_papers_random_and_oracle(tmp_path, capsys):
    from metarl.paper import FIGURE5

    low, high = FIGURE5["metarl/Navigation2D-v0"]["random"][0], FIGURE5["metarl/Navigation2D-v0"]["oracle"][0]
    paths = [
        _result(tmp_path, "random", [-70.0, -60.0]),
        _result(tmp_path, "oracle", [-1.0]),
        _seed_result(tmp_path, "maml_trpo_s0", "maml_trpo", [-40.0, -12.0], 0),
        _seed_result(tmp_path, "maml_trpo_s1", "maml_trpo", [-40.0, -14.0], 1),
    ]
    assert main(["compare", "--seeds", "--paper", *map(str, paths)]) == 0
    out = capsys.readouterr().out
    own, paper = out.split("against the MAML paper's references")
    # own references: (−12 + 70) / 69; the paper's: (−12 + 82.7) / 80.41
    assert f"{58 / 69:.2f}" in next(line for line in own.splitlines() if line.startswith("maml_trpo_s0"))
    rows = paper.splitlines()
    s0 = next(line for line in rows if line.startswith("maml_trpo_s0"))
    assert s0.split()[-1] == f"{(-12 - low) / (high - low):.2f}"
    ours = next(line for line in rows if line.startswith("oracle"))
    assert ours.split()[-1] == f"{(-1 - low) / (high - low):.2f}"
    maml = next(line for line in rows if line.startswith("paper: maml"))
    assert maml.split()[2:4] == ["-40.4", "-11.7"]
    assert maml.split()[-1] == f"{(-11.7 - low) / (high - low):.2f}"
    assert next(line for line in rows if line.startswith("paper: oracle")).split()[-1] == "1.00"
    pooled = paper[paper.index("mean over training seeds") :].splitlines()
    mean = ((-12 - low) + (-14 - low)) / 2 / (high - low)
    pooled_maml = next(line for line in pooled if line.startswith("maml_trpo"))
    assert f"{mean:.2f} ± {1 / (high - low):.2f}" in pooled_maml


@pytest.mark.parametrize(
    ("envs", "phrase"),
    [
        (["supervised/Sinusoid"], "no results for supervised/Sinusoid; it reports metarl/HalfCheetahVel-v0"),
        (["metarl/Navigation2D-v0", "metarl/HalfCheetahDir-v0"], "the results come from 2 envs"),
    ],
)
def test_compare_paper_refuses_families_the_paper_lacks_in_one_line(tmp_path, capsys, envs, phrase):
    paths = [_result(tmp_path, f"maml_{i}", [1.0, 2.0], env=env) for i, env in enumerate(envs)]
    assert main(["compare", "--paper", *map(str, paths)]) == 2
    captured = capsys.readouterr()
    assert phrase in captured.err and len(captured.err.strip().splitlines()) == 1 and not captured.out


def _per_task(path, method, tasks, per_task):
    """An evaluate result with per-task returns, as ``evaluate --json`` writes for RL runs."""
    record = {"env_id": "metarl/HalfCheetahDir-v0", "method": method, "num_tasks": len(tasks)}
    steps = len(per_task[0])
    means = np.mean(per_task, axis=0).tolist()
    record.update(steps=list(range(steps)), mean_return=means, stderr=[1.0] * steps)
    path.write_text(json.dumps({**record, "tasks": tasks, "per_task_returns": per_task}))
    return str(path)


def test_compare_by_task_splits_each_result_by_its_tasks_values(tmp_path, capsys):
    back, fore = "DirectionTask(direction=-1)", "DirectionTask(direction=1)"
    maml = _per_task(
        tmp_path / "maml_trpo.json",
        "maml_trpo",
        [back, fore, back, fore, fore],
        [[10.0, 400.0], [-150.0, 50.0], [20.0, 500.0], [-170.0, 70.0], [-160.0, 60.0]],
    )
    oracle = _per_task(tmp_path / "oracle.json", "oracle", [back, fore, fore], [[600.0], [300.0], [310.0]])
    assert main(["compare", maml, oracle, "--by-task"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("return by held-out task") :].splitlines()
    assert table[1].split()[:3] == ["method", "task", "tasks"]
    rows = [line.split() for line in table[2:]]
    # one row per result and direction, in the results' order, each with its task count
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("maml_trpo", back, "2"),
        ("maml_trpo", fore, "3"),
        ("oracle", back, "1"),
        ("oracle", fore, "2"),
    ]
    # mean ± s.e. over that direction's tasks: (10, 20) and (400, 500); (−150, −170, −160), (50, 70, 60)
    assert " ".join(rows[0][3:]) == "15.00 ± 5.00 450.00 ± 50.00"
    assert " ".join(rows[1][3:]) == "-160.00 ± 5.77 60.00 ± 5.77"
    # one task: its return alone, no standard error; a result with fewer steps leaves cells blank
    assert rows[2][3:] == ["600.00"] and rows[3][3:] == ["305.00", "±", "5.00"]


@pytest.mark.parametrize(
    ("change", "phrase"),
    [
        ({"per_task_returns": None}, "has no per-task returns"),
        ({"tasks": "abc"}, "'tasks' must be a non-empty list, got \"abc\""),
        ({"per_task_returns": [[1.0, 2.0]]}, "one entry per task (2)"),
        ({"per_task_returns": [[1.0, 2.0], [3.0, "x"]]}, "'per_task_returns'[1] must be a list of 2 numbers"),
        ({"tasks": ["a", "b"]}, None),  # fine: the control case
    ],
)
def test_compare_by_task_refuses_malformed_per_task_fields_in_one_line(tmp_path, capsys, change, phrase):
    path = tmp_path / "maml_trpo.json"
    _per_task(path, "maml_trpo", ["a", "b"], [[1.0, 2.0], [3.0, 4.0]])
    record = json.loads(path.read_text())
    record.update({k: v for k, v in change.items() if v is not None})
    for key in [k for k, v in change.items() if v is None]:
        del record[key]
    path.write_text(json.dumps(record))
    code = main(["compare", str(path), "--by-task"])
    captured = capsys.readouterr()
    if phrase is None:
        assert code == 0 and "return by held-out task" in captured.out
        return
    assert code == 2 and captured.out == ""
    err = captured.err.strip()
    assert phrase in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_compare_by_task_refuses_families_with_many_task_values(tmp_path, capsys, monkeypatch):
    tasks = [f"VelocityTask(velocity={v})" for v in range(4)]
    path = _per_task(tmp_path / "maml_trpo.json", "maml_trpo", tasks, [[1.0], [2.0], [3.0], [4.0]])
    monkeypatch.setattr("metarl.plotting.MAX_TASK_GROUPS", 3)
    assert main(["compare", path, "--by-task"]) == 2
    err = capsys.readouterr().err.strip()
    assert "take 4 different values; splitting needs at most 3" in err and len(err.splitlines()) == 1


def _logged_run(path, pre, post):
    """A run directory whose TensorBoard events hold the training curves ``pre`` and ``post``."""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(path)) as writer:
        for step, (a, b) in enumerate(zip(pre, post, strict=True), start=1):
            writer.add_scalar("return/pre_adaptation", a, step)
            writer.add_scalar("return/post_adaptation", b, step)
    return path


def test_plot_seeds_pools_the_training_curves_of_each_methods_runs(tmp_path, monkeypatch):
    import matplotlib.colors
    import matplotlib.figure

    from metarl.plotting import pool_training_curves, training_curves

    runs = [
        _logged_run(tmp_path / "maml_trpo_seed0", [1.0, 2.0, 3.0], [5.0, 6.0, 7.0]),
        _logged_run(tmp_path / "maml_trpo_seed1", [3.0, 4.0, 5.0], [9.0, 10.0, 11.0]),
        _logged_run(tmp_path / "maml_trpo_seed2", [2.0, 3.0], [7.0, 8.0]),  # still training
        _logged_run(tmp_path / "promp_seed0", [0.0, 0.0, 0.0], [4.0, 4.0, 4.0]),
    ]
    pooled = pool_training_curves([(r, training_curves(r)) for r in runs], window=1)
    assert [(g["group"], g["seeds"]) for g in pooled] == [("maml_trpo", 3), ("promp", 1)]
    steps, means, errors = pooled[0]["curves"]["return/post_adaptation"]
    assert steps == [1, 2]  # the iterations all three seeds have logged
    np.testing.assert_allclose(means, [7.0, 8.0])
    np.testing.assert_allclose(errors, [2 / np.sqrt(3), 2 / np.sqrt(3)])  # sd 2 across 3 seeds
    assert pooled[1]["curves"]["return/pre_adaptation"] == ([1, 2, 3], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
    # smoothed per seed before pooling: seed 0's pre curve averages to 1, 1.5, 2
    smoothed = pool_training_curves([(runs[0], training_curves(runs[0]))], window=5)
    assert smoothed[0]["curves"]["return/pre_adaptation"][1] == [1.0, 1.5, 2.0]

    drawn = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: drawn.append(fig.axes))
    results = [
        _seed_result(tmp_path, "maml_trpo_seed0", "maml_trpo", [2.0, 5.0], 0),
        _seed_result(tmp_path, "maml_trpo_seed1", "maml_trpo", [4.0, 7.0], 1),
        _seed_result(tmp_path, "promp_seed0", "promp", [1.0, 3.0], 0),
    ]
    inputs = [*map(str, results), *map(str, runs)]
    assert main(["plot", "--seeds", *inputs, "--out", str(tmp_path / "fig.png")]) == 0
    left, right = drawn[0]
    assert right.get_legend_handles_labels()[1] == [
        "maml_trpo (3 seeds; ± s.e. across seeds): before adaptation",
        "maml_trpo (3 seeds; ± s.e. across seeds): after adaptation",
        "promp: before adaptation",
        "promp: after adaptation",
    ]
    assert len(right.collections) == 2  # a band for each of maml_trpo's curves, none for one seed
    # each method keeps one colour in both panels, and the two methods differ
    colour = {line.get_label(): matplotlib.colors.to_hex(line.get_color()) for line in right.lines}
    bars = {c.get_label(): matplotlib.colors.to_hex(c.lines[0].get_color()) for c in left.containers}
    maml = bars["maml_trpo (2 seeds; ± s.e. across seeds)"]
    assert colour["maml_trpo (3 seeds; ± s.e. across seeds): after adaptation"] == maml
    assert colour["promp: after adaptation"] == bars["promp"] != maml

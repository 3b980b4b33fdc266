"""metarl plot and metarl compare."""

import json

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

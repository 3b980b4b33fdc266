"""metarl summary: a run's iterations, best checkpoint, env steps and logged training time."""

import pytest
import torch
import yaml

from metarl.cli import main
from metarl.summary import run_summary
from tests.conftest import TINY
from tests.test_errors import one_line_error


def _logged(run, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    return {e.step: e.value for e in events.Scalars(tag)}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 4-iteration run validated every 2 iterations."""
    folder = tmp_path_factory.mktemp("summary")
    config = folder / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "iterations": 4, "validation": {"every": 2, "tasks": 2}}))
    assert main(["train", str(config), "--out", str(folder / "run"), "--no-progress"]) == 0
    return folder / "run"


def test_summary_reports_the_checkpoints_and_the_logged_times(run, capsys):
    latest = torch.load(run / "checkpoint.pt", weights_only=True)
    best = torch.load(run / "best.pt", weights_only=True)
    s = run_summary(run)
    assert (s["iteration"], s["iterations"], s["seed"]) == (4, 4, 0)
    assert s["best_iteration"] == best["iteration"] in (2, 4) and s["best_by"] == "validation"
    assert s["best_score"] == pytest.approx(best["best_return"])
    assert s["env_steps"] == latest["env_steps"] > 0 and s["best_env_steps"] == best["env_steps"]
    iteration, validation = _logged(run, "time/iteration_s"), _logged(run, "time/validation_s")
    assert sorted(iteration) == [1, 2, 3, 4] and sorted(validation) == [2, 4]
    assert s["time_s"] == pytest.approx(sum(iteration.values()) + sum(validation.values()))
    upto = s["best_iteration"]
    expected = sum(v for k, v in [*iteration.items(), *validation.items()] if k <= upto)
    assert s["best_time_s"] == pytest.approx(expected)
    assert s["median_s"]["iteration"] > 0 and s["median_s"]["meta-step"] > 0

    assert main(["summary", str(run)]) == 0
    out = capsys.readouterr().out
    assert "seed 0" in out and "4 of 4" in out and f"iteration {upto}, validation return" in out


def test_a_step_logged_again_after_a_resume_counts_once(run, tmp_path):
    import shutil

    from torch.utils.tensorboard import SummaryWriter

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    before = run_summary(copy)["time_s"]
    old = _logged(copy, "time/iteration_s")[4]
    with SummaryWriter(str(copy)) as writer:  # as a run resumed before iteration 4 logs it again
        writer.add_scalar("time/iteration_s", old + 100.0, 4)
    assert run_summary(copy)["time_s"] == pytest.approx(before + 100.0)


def test_summary_of_what_is_not_a_meta_training_run_is_one_line(run, tmp_path, capsys):
    one_line_error(capsys, main(["summary", str(run / "checkpoint.pt")]), "is not a run directory")
    one_line_error(capsys, main(["summary", str(tmp_path)]), "has no checkpoint.pt")
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    assert main(["baseline", "random", str(config), "--out", str(tmp_path / "random")]) == 0
    capsys.readouterr()
    one_line_error(capsys, main(["summary", str(run), str(tmp_path / "random")]), "the random baseline")

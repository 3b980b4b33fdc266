"""metarl summary: a run's iterations, best checkpoint, env steps and logged training time."""

import os
import select
import statistics
import subprocess
import sys
from pathlib import Path

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
    assert (s["iteration"], s["iterations"], s["seed"], s["logged_iterations"]) == (4, 4, 0, 4)
    assert s["best_iteration"] == best["iteration"] in (2, 4) and s["best_by"] == "validation"
    assert s["best_score"] == pytest.approx(best["best_return"])
    assert s["env_steps"] == latest["env_steps"] > 0 and s["best_env_steps"] == best["env_steps"]
    iteration, validation = _logged(run, "time/iteration_s"), _logged(run, "time/validation_s")
    assert sorted(iteration) == [1, 2, 3, 4] and sorted(validation) == [2, 4]
    assert s["time_s"] == pytest.approx(sum(iteration.values()) + sum(validation.values()))
    upto = s["best_iteration"]
    expected = sum(v for k, v in [*iteration.items(), *validation.items()] if k <= upto)
    assert s["best_time_s"] == pytest.approx(expected)
    assert s["median_s"]["iteration"] == pytest.approx(statistics.median(iteration.values()))
    assert s["median_s"]["meta-step"] > 0

    assert main(["summary", str(run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{run}: maml_trpo on metarl/Navigation2D-v0, seed 0"
    rows = {line[2:19].strip(): line[20:] for line in lines[1:]}
    assert rows["iterations"] == "4 of 4"
    assert rows["best.pt"].startswith(f"iteration {upto}, validation return {best['best_return']:.4g}")
    assert rows["env steps"] == f"{latest['env_steps']:,} ({best['env_steps']:,} to best.pt)"
    assert rows["training time"].endswith("the logged iteration and validation times summed")
    assert rows["median iteration"].startswith(("0.", "1", "2", "3", "4", "5", "6", "7", "8", "9"))
    assert "sampling" in rows["median iteration"] and "meta-step" in rows["median iteration"]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.0123, "12.3 ms"), (41.26, "41.3 s"), (725.0, "12 min 5 s"), (8520.0, "2 h 22 min")],
)
def test_durations_read_naturally(seconds, text):
    from metarl.summary import _duration, _seconds

    assert (_seconds(seconds) if seconds < 60 else _duration(seconds)) == text


def test_a_step_logged_again_after_a_resume_counts_once(run, tmp_path):
    import shutil

    from torch.utils.tensorboard import SummaryWriter

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    before = run_summary(copy)
    old, validation = _logged(copy, "time/iteration_s")[4], _logged(copy, "time/validation_s")[4]
    # As a run resumed from iteration 3 logs iteration 4 again (metarl.training.RunLog's writer
    # purges what the stopped run logged from there on: here iteration 4's times).
    with SummaryWriter(str(copy), purge_step=4) as writer:
        writer.add_scalar("time/iteration_s", old + 100.0, 4)
    after = run_summary(copy)
    assert after["time_s"] == pytest.approx(before["time_s"] + 100.0 - validation)
    assert after["logged_iterations"] == 4


def test_partial_events_and_a_run_without_validation_say_so(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "iterations": 2, "validation": {"every": 0}}))
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    for events in (tmp_path / "run").glob("events.out.tfevents.*"):
        events.unlink()
    capsys.readouterr()
    assert main(["summary", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "training return after adaptation" in out and "training time" not in out
    assert "after adapting" not in out and "validation  " not in out  # no events, no trend
    assert run_summary(tmp_path / "run")["logged_iterations"] == 0


def test_summary_of_what_is_not_a_meta_training_run_is_one_line(run, tmp_path, capsys):
    one_line_error(capsys, main(["summary", str(run / "checkpoint.pt")]), "is not a run directory")
    one_line_error(capsys, main(["summary", str(tmp_path)]), "has no checkpoint.pt")
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    assert main(["baseline", "random", str(config), "--out", str(tmp_path / "random")]) == 0
    capsys.readouterr()
    code = main(["summary", str(run), str(tmp_path / "random")])
    captured = capsys.readouterr()
    assert captured.out == ""  # every run is checked before anything is printed
    assert code == 2 and "the random baseline" in captured.err and len(captured.err.strip().splitlines()) == 1


def test_a_checkpoint_with_a_malformed_field_is_one_line(run, tmp_path, capsys):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    state = torch.load(copy / "best.pt", weights_only=True)
    torch.save({**state, "best_return": "high"}, copy / "best.pt")
    one_line_error(capsys, main(["summary", str(copy)]), "'best_return' must be a number, got 'high'")


def test_checkpoints_record_the_machine_of_each_part_of_a_run(run, tmp_path, capsys):
    import shutil

    from metarl_envs.batched import usable_cores

    (first,) = torch.load(run / "checkpoint.pt", weights_only=True)["machines"]
    assert first["from_iteration"] == 0 and first["cores"] == usable_cores()
    assert first["torch"] == str(torch.__version__) and first["device"].startswith("cpu (")
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    threads = torch.get_num_threads()
    try:  # a resume on the same machine and settings is the same part; other threads, a new one
        assert main(["train", "--resume", str(copy), "--set", "iterations=5", "--no-progress"]) == 0
        assert len(run_summary(copy)["machines"]) == 1
        other = 1 if first["torch_threads"] != 1 else 2
        args = ["train", "--resume", str(copy), "--set", "iterations=6", "--set", f"num_threads={other}"]
        assert main([*args, "--no-progress"]) == 0
    finally:
        torch.set_num_threads(threads)
    machines = run_summary(copy)["machines"]
    assert [m["from_iteration"] for m in machines] == [0, 5] and machines[1]["torch_threads"] == other
    capsys.readouterr()
    assert main(["summary", str(copy)]) == 0
    out = capsys.readouterr().out
    assert "ran on            iterations 1–5: " in out and "iteration 6: " in out


@pytest.mark.skipif(not hasattr(select, "poll"), reason="needs poll() to see the closed pipe")
def test_summary_into_a_closed_pipe_stops_quietly(run):
    # `metarl summary RUN | head -1`: head exits first; no traceback, the shell's SIGPIPE status.
    read, write = os.pipe()
    os.close(read)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "metarl", "summary", str(run)],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (141, "")


def test_verbose_logs_metarls_progress_and_no_library_chatter(run, tmp_path):
    """-v before or after the command opens metarl's INFO records, not TensorBoard's."""
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "iterations": 1, "validation": {"every": 0}}))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cli = [sys.executable, "-m", "metarl"]
    train = subprocess.run(
        [*cli, "-v", "train", str(config), "--out", str(tmp_path / "run"), "--no-progress"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "INFO metarl.learners.base: iter 1:" in train.stderr
    from metarl.cli import build_parser

    parse = build_parser().parse_args
    assert [parse(a).verbose for a in (["-v", "summary", "R"], ["summary", "R", "-v"], ["summary", "R"])] == [
        True,
        True,
        False,
    ]
    for args in (["-v", "summary", str(run)], ["summary", str(run), "-v"]):
        summary = subprocess.run([*cli, *args], capture_output=True, text=True, env=env, check=True)
        assert summary.stdout.startswith(f"{run}: maml_trpo")
        assert "tensorboard" not in summary.stderr.lower(), summary.stderr
    quiet = subprocess.run([*cli, "summary", str(run)], capture_output=True, text=True, env=env, check=True)
    assert quiet.stderr == ""


def test_summary_says_whether_the_returns_moved(run, capsys):
    """The first and last iterations' mean training returns, and the first and latest validation."""
    post, pre = _logged(run, "return/post_adaptation"), _logged(run, "return/pre_adaptation")
    score = _logged(run, "validation/score")
    s = run_summary(run)
    # 4 iterations: the first 2 against the last 2 (a window never takes more than half)
    assert s["trend"]["post"]["first"] == pytest.approx((post[1] + post[2]) / 2)
    assert s["trend"]["post"]["last"] == pytest.approx((post[3] + post[4]) / 2)
    assert s["trend"]["pre"]["first"] == pytest.approx((pre[1] + pre[2]) / 2)
    assert (s["trend"]["post"]["first_span"], s["trend"]["post"]["last_span"]) == ((1, 2), (3, 4))
    assert s["validation"] == {
        "count": 2,
        "first": (2, pytest.approx(score[2])),
        "latest": (4, pytest.approx(score[4])),
    }

    assert main(["summary", str(run)]) == 0
    rows = {line[2:19].strip(): line[20:].strip() for line in capsys.readouterr().out.splitlines()[1:]}
    moved = f"after adapting {s['trend']['post']['first']:.4g} → {s['trend']['post']['last']:.4g}"
    assert rows["training return"].startswith(moved + ", before ")
    assert rows["training return"].endswith("(means over iterations 1–2 and 3–4)")
    latest = f"{score[4]:.4g} at iteration 4, the latest of 2"
    assert rows["validation"] == f"return {score[2]:.4g} at iteration 2 → {latest}"


def test_the_trend_windows_hold_at_most_ten_iterations_and_half_of_a_short_run():
    from metarl.summary import _ends, _trend, _validations

    assert _ends({}) is None and _ends({1: 3.0}) is None  # one value cannot move
    assert _ends({1: 1.0, 2: float("nan"), 3: 5.0}) == {  # a failed iteration's NaN is left out
        "first": 1.0,
        "first_span": (1, 1),
        "last": 5.0,
        "last_span": (3, 3),
    }
    five = _ends({k: float(k) for k in range(1, 6)})  # windows of 2: 1–2 and 4–5
    assert (five["first"], five["first_span"], five["last"], five["last_span"]) == (1.5, (1, 2), 4.5, (4, 5))
    long = _ends({k: float(k) for k in range(1, 26)})  # 10 each, not 12
    assert (long["first"], long["first_span"], long["last"], long["last_span"]) == (
        5.5,
        (1, 10),
        20.5,
        (16, 25),
    )
    supervised = _trend({"loss/post_adaptation": {1: 2.0, 2: 1.0}, "loss/pre_adaptation": {1: 3.0, 2: 3.0}})
    assert supervised["kind"] == "loss" and supervised["post"]["last"] == 1.0
    assert _validations({}) is None
    assert _validations({10: -0.5}) == {"count": 1, "first": (10, -0.5), "latest": (10, -0.5)}

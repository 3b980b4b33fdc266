"""What a meta-training run cost and where it stands, from its run directory alone: iterations
done, the checkpoint ``best.pt`` holds and its score, env steps, and the training time summed
from the per-iteration times the run logged to TensorBoard (the figures a results table needs)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from metarl.errors import MetarlError
from metarl.runs import BEST, CHECKPOINT

# The parts of an iteration the learners time, as (TensorBoard tag, label).
PARTS = (
    ("time/sampling_s", "sampling"),
    ("time/adaptation_s", "adaptation"),
    ("time/meta_step_s", "meta-step"),
)


def _scalars(run_dir: Path) -> dict[str, dict[int, float]]:
    """Every scalar the run logged, as tag → {iteration: value}. A resumed run logs again the
    iterations after its last checkpoint; the later value of a step is the one kept."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    try:
        events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
        events.Reload()
        scalars: dict[str, dict[int, float]] = {}
        for tag in events.Tags().get("scalars", []):
            by_step: dict[int, float] = {}
            for event in sorted(events.Scalars(tag), key=lambda e: e.wall_time):
                by_step[event.step] = event.value
            scalars[tag] = by_step
    except Exception as exc:  # the reader raises OSErrors and its own parse errors
        raise MetarlError(f"cannot read the TensorBoard events in {str(run_dir)!r} ({exc})") from None
    return scalars


def _number(state: dict[str, Any], key: str, file: Path, integer: bool = True) -> Any:
    """``state[key]`` if it is a number (an integer where ``integer``), None if missing, else a
    one-line error naming the file, the key and the value."""
    value = state.get(key)
    kind = int if integer else (int, float)
    if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
        what = "an integer" if integer else "a number"
        raise MetarlError(f"{str(file)!r}: {key!r} must be {what}, got {value!r}")
    return value


def run_summary(run_dir: str | Path) -> dict[str, Any]:
    """The summary of one meta-training run directory, as a dict: ``env``, ``algorithm``,
    ``seed``, ``iteration`` (done) and ``iterations`` (configured), ``best_iteration``,
    ``best_by`` and ``best_score`` (``best.pt``'s), ``env_steps`` and ``best_env_steps``,
    ``time_s`` and ``best_time_s`` (the logged iteration and validation times summed over the
    iterations done, and up to ``best.pt``'s), ``logged_iterations`` (how many of the iterations
    done logged their time: fewer means the sums are partial), ``median_s`` (the median of each
    logged time, by part: ``iteration``, ``sampling``, ``adaptation``, ``meta-step``,
    ``validation``), and ``machines`` (what the iterations ran on: a record for each part of the
    run that started on another machine or setting, with the iteration it started from; empty
    for runs from before metarl kept them), ``trend`` (``post`` and ``pre``: the mean training
    return, or a supervised run's loss, after and before adapting over the first and the last
    logged iterations, see :func:`_trend`) and ``validation`` (the first and the latest
    validation score and their iterations). Values the run did not log are None. Anything but a
    run directory with a checkpoint is a one-line :class:`MetarlError`."""
    from metarl.checkpoint import load_checkpoint

    path = Path(run_dir)
    if not path.is_dir():
        raise MetarlError(f"{str(path)!r} is not a run directory (metarl summary takes run directories)")
    if not (path / CHECKPOINT).is_file():
        raise MetarlError(
            f"{str(path)!r} has no {CHECKPOINT}: not a run directory, or its first iteration is not done"
        )
    latest = load_checkpoint(path / CHECKPOINT)
    if "method" in latest or "iteration" not in latest:
        what = f"the {latest.get('method')} baseline" if "method" in latest else "no training iterations"
        raise MetarlError(f"{str(path)!r} holds {what}, not a meta-training run: summary covers those")
    best = load_checkpoint(path / BEST) if (path / BEST).is_file() else {}
    iteration = _number(latest, "iteration", path / CHECKPOINT)
    best_iteration = _number(best, "iteration", path / BEST)
    last = max(iteration, best_iteration or 0)
    scalars = {
        tag: {step: v for step, v in series.items() if step <= last} for tag, series in _scalars(path).items()
    }
    times = [scalars.get(t, {}) for t in ("time/iteration_s", "time/validation_s")]

    def summed(upto: int | None) -> float | None:
        if not times[0] or upto is None:
            return None
        return sum(v for series in times for step, v in series.items() if step <= upto)

    done = {tag: {k: v for k, v in series.items() if k <= iteration} for tag, series in scalars.items()}
    medians: dict[str, float | None] = {}
    for tag, label in (("time/iteration_s", "iteration"), *PARTS, ("time/validation_s", "validation")):
        values = list(done.get(tag, {}).values())
        medians[label] = statistics.median(values) if values else None
    return {
        "run": str(path),
        "env": latest["config"].get("env"),
        "algorithm": latest["config"].get("algorithm"),
        "seed": latest["config"].get("seed"),
        "iteration": iteration,
        "iterations": _number(latest["config"], "iterations", path / CHECKPOINT),
        "best_iteration": best_iteration,
        "best_by": best.get("best_by"),
        "best_score": _number(best, "best_return", path / BEST, integer=False),
        "env_steps": _number(latest, "env_steps", path / CHECKPOINT) or None,
        "best_env_steps": _number(best, "env_steps", path / BEST) or None,
        "time_s": summed(iteration),
        "best_time_s": summed(best_iteration),
        "logged_iterations": sum(1 for step in times[0] if 1 <= step <= iteration),
        "median_s": medians,
        "machines": _machines(latest, path / CHECKPOINT),
        "trend": _trend(done),
        "validation": _validations(done.get("validation/score", {})),
    }


TREND_WINDOW = 10


def _trend(scalars: dict[str, dict[int, float]]) -> dict[str, Any]:
    """``kind`` (``return`` for RL runs, ``loss`` for supervised ones) and the :func:`_ends` of
    its ``post`` (after adapting) and ``pre`` (before) training curves."""
    kind = "return" if "return/post_adaptation" in scalars else "loss"
    return {
        "kind": kind,
        "post": _ends(scalars.get(f"{kind}/post_adaptation", {})),
        "pre": _ends(scalars.get(f"{kind}/pre_adaptation", {})),
    }


def _ends(series: dict[int, float]) -> dict[str, Any] | None:
    """Whether a logged curve moved: its mean over its first and over its last iterations (up
    to ``TREND_WINDOW`` each, and no more than half of them), with the iterations each mean
    spans. Non-finite values (a failed iteration's) are left out; None under 2 values."""
    series = {k: v for k, v in series.items() if math.isfinite(v)}
    if len(series) < 2:
        return None
    steps = sorted(series)
    n = max(1, min(TREND_WINDOW, len(steps) // 2))
    first, last = steps[:n], steps[-n:]
    return {
        "first": statistics.fmean(series[k] for k in first),
        "first_span": (first[0], first[-1]),
        "last": statistics.fmean(series[k] for k in last),
        "last_span": (last[0], last[-1]),
    }


def _validations(series: dict[int, float]) -> dict[str, Any] | None:
    """The first and the latest validation score, each with its iteration, and how many."""
    if not series:
        return None
    steps = sorted(series)
    return {
        "count": len(steps),
        "first": (steps[0], series[steps[0]]),
        "latest": (steps[-1], series[steps[-1]]),
    }


def _machines(state: dict[str, Any], file: Path) -> list[dict[str, Any]]:
    """The checkpoint's record of what the iterations ran on (empty for runs written before
    metarl kept one), checked to be a list of objects."""
    machines = state.get("machines", [])
    if not isinstance(machines, list) or not all(isinstance(m, dict) for m in machines):
        raise MetarlError(f"{str(file)!r}: 'machines' must be a list of objects, got {machines!r:.60}")
    return machines


def _describe_machine(m: dict[str, Any]) -> str:
    """``Linux x86_64, AMD EPYC 7B13, 2 cores; cpu (2 torch threads); torch 2.13.0``."""
    cores = f"{m['cores']} cores" if "cores" in m else ""
    host = ", ".join(str(x) for x in (m.get("system"), m.get("cpu"), cores) if x)
    rest = [str(m["device"])] if "device" in m else []
    rest += [f"torch {m['torch']}"] if "torch" in m else []
    return "; ".join([host, *rest]) if host else "; ".join(rest)


def _duration(seconds: float) -> str:
    """``2 h 19 min``, ``12 min 5 s`` or ``41.3 s``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes = round(seconds) // 60
    if minutes < 60:
        return f"{minutes} min {round(seconds) % 60} s"
    return f"{minutes // 60} h {minutes % 60} min"


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value >= 1 else f"{value * 1000:.1f} ms"


def _steps(count: int) -> str:
    return f"{count / 1e6:.1f} M" if count >= 1e6 else f"{count:,}"


def format_summary(summary: dict[str, Any]) -> str:
    """:func:`run_summary` as a few aligned lines of text."""
    s = summary
    lines = [f"{s['run']}: {s['algorithm']} on {s['env']}, seed {s['seed']}"]
    of = f" of {s['iterations']}" if s["iterations"] is not None else ""
    rows = [("iterations", f"{s['iteration']}{of}")]
    if s["best_iteration"] is not None:
        supervised = str(s["env"]).startswith("supervised/")
        if str(s["best_by"]).startswith("validation"):
            by = "validation score (minus the query loss)" if supervised else "validation return"
            if s["best_by"] == "validation/proximal":
                by = "validation score (minus the query loss after proximal steps)"
        else:
            by = "training score" if supervised else "training return after adaptation"
        score = f" {s['best_score']:.4g}" if s["best_score"] is not None else ""
        ahead = ""
        if s["best_iteration"] > s["iteration"]:  # the run stopped between the two writes
            ahead = f"; ahead of {CHECKPOINT}, whose iteration a --resume trains again"
        rows.append(("best.pt", f"iteration {s['best_iteration']}, {by}{score}{ahead}"))
    if s["env_steps"]:
        to_best = f" ({_steps(s['best_env_steps'])} to best.pt)" if s["best_env_steps"] else ""
        rows.append(("env steps", _steps(s["env_steps"]) + to_best))
    if s["time_s"] is not None:
        to_best = f" ({_duration(s['best_time_s'])} to best.pt)" if s["best_time_s"] is not None else ""
        partial = ""
        if s["logged_iterations"] < s["iteration"]:
            logged, done = s["logged_iterations"], s["iteration"]
            partial = f"; the events hold the times of only {logged} of the {done} iterations"
        what = "the logged iteration and validation times summed"
        rows.append(("training time", f"{_duration(s['time_s'])}{to_best}, {what}{partial}"))
    medians = s["median_s"]
    if medians.get("iteration") is not None:
        parts = [
            f"{label} {_seconds(medians[label])}" for _, label in PARTS if medians.get(label) is not None
        ]
        text = _seconds(medians["iteration"]) + (f" ({', '.join(parts)})" if parts else "")
        if medians.get("validation") is not None:
            text += f"; a validation {_seconds(medians['validation'])}"
        rows.append(("median iteration", text))
    trend = s.get("trend") or {}
    post, pre = trend.get("post"), trend.get("pre")
    if post is not None:
        (a, b), (c, d) = post["first_span"], post["last_span"]
        where = f"iteration {a}, then {c}" if a == b else f"means over iterations {a}–{b} and {c}–{d}"
        moved = f"after adapting {post['first']:.4g} → {post['last']:.4g}"
        if pre is not None:
            moved += f", before {pre['first']:.4g} → {pre['last']:.4g}"
        rows.append((f"training {trend.get('kind', 'return')}", f"{moved} ({where})"))
    validation = s.get("validation")
    if validation is not None:
        supervised = str(s["env"]).startswith("supervised/")
        (i0, v0), (i1, v1) = validation["first"], validation["latest"]
        text = f"{'score' if supervised else 'return'} {v0:.4g} at iteration {i0}"
        if validation["count"] > 1:
            text += f" → {v1:.4g} at iteration {i1}, the latest of {validation['count']}"
        rows.append(("validation", text))
    parts = s.get("machines") or []
    for i, m in enumerate(parts):
        name = "ran on" if i == 0 else ""
        if len(parts) == 1:
            rows.append((name, _describe_machine(m)))
            continue
        start = m.get("from_iteration", 0) + 1
        end = parts[i + 1].get("from_iteration", s["iteration"]) if i + 1 < len(parts) else s["iteration"]
        span = f"iteration {start}" if start == end else f"iterations {start}–{end}"
        rows.append((name, f"{span}: {_describe_machine(m)}"))
    width = max(len(name) for name, _ in rows)
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    return "\n".join(lines)

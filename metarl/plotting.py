"""Pictures and tables of results: return against adaptation steps (the MAML paper's Figure 5),
training curves from a run's TensorBoard events, and a methods × steps comparison table."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from metarl.errors import MetarlError

TRAINING_TAGS = ("return/pre_adaptation", "return/post_adaptation")


def load_result(path: str | Path) -> dict[str, Any]:
    """An ``evaluate --json`` file, with its method name (the file's stem if it has none).

    Anything else (not JSON, not an object, missing or malformed ``steps``, ``mean_return`` or
    ``stderr``) is a one-line :class:`MetarlError` naming the file and what is wrong."""
    path = Path(path)
    name = repr(str(path))
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MetarlError(f"no such file: {name}") from None
    except IsADirectoryError:
        raise MetarlError(f"{name} is a directory, not an evaluate --json file") from None
    except OSError as exc:
        raise MetarlError(f"cannot read {name}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MetarlError(f"{name} is not JSON ({exc})") from None
    written_by = "(written by metarl evaluate --json)"
    if not isinstance(result, dict):
        raise MetarlError(
            f"{name} is not an evaluate result {written_by}: it holds a JSON {_json_type(result)}, "
            "not an object"
        )
    if "mean_mse" in result and "mean_return" not in result:  # supervised: lower is better
        result["mean_return"], result["metric"] = result["mean_mse"], "query MSE"
    missing = [k for k in ("steps", "mean_return", "stderr") if k not in result]
    if missing:
        raise MetarlError(f"{name} is not an evaluate result {written_by}: no {', '.join(missing)}")
    length = None
    for key in ("steps", "mean_return", "stderr"):
        values = result[key]
        integers = key == "steps"
        if not isinstance(values, list) or not values or not all(_json_number(v, integers) for v in values):
            kind = "integers" if integers else "numbers"
            got = _json_short(values)
            raise MetarlError(f"{name}: {key!r} must be a non-empty list of {kind}, got {got}")
        if length is not None and len(values) != length:
            raise MetarlError(
                f"{name}: 'steps', 'mean_return' and 'stderr' must have the same length, "
                f"got {len(result['steps'])}, {len(result['mean_return'])} and {len(result['stderr'])}"
            )
        length = len(values)
    for key, kind, ok in (
        ("method", "a string", lambda v: isinstance(v, str) and v != ""),
        ("env_id", "a string", lambda v: isinstance(v, str)),
        ("num_tasks", "an integer", lambda v: _json_number(v, True)),
    ):
        if key in result and not ok(result[key]):
            raise MetarlError(f"{name}: {key!r} must be {kind}, got {_json_short(result[key])}")
    result.setdefault("method", path.stem)
    if result.get("adaptation") == "proximal":  # iMAML's own steps: not comparable with SGD rows
        result["method"] = f"{result['method']} (proximal steps)"
    return result


def _json_number(value: Any, integer: bool = False) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if integer else isinstance(value, (int, float))


def _json_type(value: Any) -> str:
    names = {list: "list", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _json_short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def training_curves(run_dir: str | Path) -> dict[str, tuple[list[int], list[float]]]:
    """Return before and after adaptation per iteration, from a run directory's events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = events.Tags().get("scalars", [])
    if not all(t in tags for t in TRAINING_TAGS):
        raise MetarlError(f"{str(run_dir)!r} holds no training curves (no TensorBoard events of a run)")
    return {
        t: ([e.step for e in events.Scalars(t)], [e.value for e in events.Scalars(t)]) for t in TRAINING_TAGS
    }


def load_results(paths: list[str | Path]) -> list[dict[str, Any]]:
    """:func:`load_result` of every path, each result remembering its file (``"path"``), which
    tells apart the rows of results that share a method (see :func:`result_labels`)."""
    results = []
    for path in paths:
        result = load_result(path)
        result["path"] = str(path)
        results.append(result)
    return results


def result_labels(results: list[dict[str, Any]]) -> list[str]:
    """One label per result, for table rows and plot legends: its method, unless other results
    share that method; those are told apart by their files: the file's stem where it begins
    with the method (``maml_trpo_500it``), else ``method (stem)``; by folder and stem where
    stems repeat; numbered in order where files do not tell (or are unknown)."""
    from collections import defaultdict

    groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(results):
        groups[r["method"]].append(i)
    labels = [r["method"] for r in results]
    for method, same in groups.items():
        if len(same) == 1:
            continue
        paths = [Path(results[i]["path"]) if results[i].get("path") else None for i in same]
        choices = [[f"{method} #{k}" for k in range(1, len(same) + 1)]]
        if all(paths):
            by_stem = [p.stem if p.stem.startswith(method) else f"{method} ({p.stem})" for p in paths]
            by_folder = [f"{method} ({p.parent.name}/{p.stem})" for p in paths]
            choices = [by_stem, by_folder, *choices]
        names = next(c for c in choices if len(set(c)) == len(c))
        for i, name in zip(same, names, strict=True):
            labels[i] = name
    return labels


def _reference(results: list[dict[str, Any]], labels: list[str], method: str) -> tuple[int | None, str]:
    """The index of the ``random`` or ``oracle`` result the scores use, and a note saying which
    when there was a choice: several such results are resolved by the one file named
    ``random.json`` / ``oracle.json``, else refused in one line."""
    found = [i for i, r in enumerate(results) if r["method"] == method]
    if len(found) <= 1:
        return (found[0] if found else None), ""
    named = [i for i in found if results[i].get("path") and Path(results[i]["path"]).stem == method]
    if len(named) == 1:
        return named[0], f"{method} = {labels[named[0]]} (of {len(found)} {method} results)"
    raise MetarlError(
        f"{len(found)} results are {method} ({', '.join(labels[i] for i in found)}) and the score needs "
        f"one: compare a single {method} result, or name the one to use {method}.json"
    )


def normalized_scores(results: list[dict[str, Any]]) -> list[list[float]] | None:
    """(R_k − R_random(0)) / (R_oracle − R_random(0)) for every result and step, each from its
    own returns (in the order of ``results``), when the results include a ``random`` and an
    ``oracle`` method (the oracle's return is its step-0 return); None otherwise. Several random
    or oracle results: see :func:`_reference`."""
    scores, _ = _scores(results, result_labels(results))
    return scores


def _scores(
    results: list[dict[str, Any]], labels: list[str], references: tuple[float, float] | None = None
) -> tuple[list[list[float]] | None, str]:
    """The scores of :func:`normalized_scores` and the note on which references they use;
    ``references`` (random return at step 0, oracle return) replaces the results' own."""
    note = ""
    if references is None:
        random, random_note = _reference(results, labels, "random")
        oracle, oracle_note = _reference(results, labels, "oracle")
        if random is None or oracle is None:
            return None, ""
        references = (results[random]["mean_return"][0], results[oracle]["mean_return"][0])
        note = "; ".join(n for n in (random_note, oracle_note) if n)
    low, high = references
    if high == low:
        return None, ""
    return [[(v - low) / (high - low) for v in r["mean_return"]] for r in results], note


def _fixed(value: float) -> str:
    """Two decimals, without the minus sign of a value that rounds to zero ("-0.00")."""
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text


def _format_rows(header: list[str], rows: list[list[str]]) -> list[str]:
    """``header`` and ``rows`` as left-aligned columns, one line each."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    lines = [header, *rows]
    return ["  ".join(f"{x:<{w}}" for x, w in zip(row, widths, strict=True)).rstrip() for row in lines]


def compare_table(results: list[dict[str, Any]]) -> str:
    """Plain-text table: one row per result (labelled by :func:`result_labels`), mean ± standard
    error after each step, and the normalized score of each step when random and oracle
    results are among them; a warning line when they recorded different env arguments."""
    steps = max(len(r["steps"]) for r in results)
    labels = result_labels(results)
    scores, note = _scores(results, labels)
    header = ["method"] + [f"step {k}" for k in range(steps)]
    if scores:
        header += [f"score {k}" for k in range(steps)]
    rows = []
    for i, r in enumerate(results):
        row = [labels[i]]
        for k in range(steps):
            if k < len(r["mean_return"]):
                row.append(f"{r['mean_return'][k]:.2f} ± {r['stderr'][k]:.2f}")
            else:
                row.append("")
        if scores:
            row += [_fixed(v) for v in scores[i]] + [""] * (steps - len(scores[i]))
        rows.append(row)
    lines = _format_rows(header, rows)
    envs = sorted({r.get("env_id", "?") for r in results})
    tasks = sorted({r.get("num_tasks", 0) for r in results})
    lines.append(f"env {', '.join(envs)}; held-out tasks {', '.join(map(str, tasks))}")
    differ = _env_kwargs_groups(results, labels)
    if differ:
        lines.append(f"warning: scored with different env arguments, not comparable: {differ}")
    if scores:
        lines.append("score = (R_k - R_random(0)) / (R_oracle - R_random(0))" + (f"; {note}" if note else ""))
    return "\n".join(lines)


def _env_kwargs_groups(results: list[dict[str, Any]], labels: list[str]) -> str:
    """Which results were scored with which env arguments (``evaluate --set env_kwargs.*``, or a
    config's own), as ``{...} (a, b); {...} (c)``, when those recorded differ; else ``""``.
    Results written before ``evaluate`` recorded them are left out: unknown is not different.
    Numbers compare by value (``1`` and ``1.0`` agree, as they do in the env)."""
    groups: dict[str, list[str]] = {}
    for label, r in zip(labels, results, strict=True):
        if isinstance(r.get("env_kwargs"), dict):
            key = json.dumps(_as_floats(r["env_kwargs"]), sort_keys=True, default=repr)
            groups.setdefault(key, []).append(label)
    if len(groups) < 2:
        return ""
    return "; ".join(f"{key} ({', '.join(names)})" for key, names in groups.items())


def _as_floats(value: Any) -> Any:
    """``value`` with every number that is not a bool written as a float, inside lists and dicts."""
    if isinstance(value, dict):
        return {k: _as_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_floats(v) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


MAX_TASK_GROUPS = 10


def task_table(results: list[dict[str, Any]]) -> str:
    """Plain-text table of each result split by its held-out tasks' values: one row per result
    and distinct task (cheetah-dir's two directions, say), with how many of the held-out tasks
    it covers and the mean return ± standard error over them after each step (the mean alone
    for a single task). It shows what a mean over the whole task distribution hides, such as a
    policy that adapts well to one direction only. Needs the ``tasks`` and ``per_task_returns``
    that ``evaluate --json`` writes for RL runs, and a family whose tasks take at most
    :data:`MAX_TASK_GROUPS` values."""
    labels = result_labels(results)
    steps = max(len(r["steps"]) for r in results)
    header = ["method", "task", "tasks"] + [f"step {k}" for k in range(steps)]
    rows = []
    for label, r in zip(labels, results, strict=True):
        name = repr(r.get("path", label))
        tasks, returns = r.get("tasks"), r.get("per_task_returns")
        if tasks is None or returns is None:
            raise MetarlError(
                f"compare --by-task: {name} has no per-task returns ('tasks' and 'per_task_returns', "
                "which evaluate --json writes for RL runs)"
            )
        if not isinstance(tasks, list) or not tasks:
            raise MetarlError(
                f"compare --by-task: {name}: 'tasks' must be a non-empty list, got {_json_short(tasks)}"
            )
        width = len(r["mean_return"])
        if not isinstance(returns, list) or len(returns) != len(tasks):
            raise MetarlError(
                f"compare --by-task: {name}: 'per_task_returns' must be a list with one entry per task "
                f"({len(tasks)}), got {_json_short(returns)}"
            )
        for i, x in enumerate(returns):
            if not isinstance(x, list) or len(x) != width or not all(map(_json_number, x)):
                raise MetarlError(
                    f"compare --by-task: {name}: 'per_task_returns'[{i}] must be a list of {width} numbers "
                    f"(one per step), got {_json_short(x)}"
                )
        groups: dict[str, list[list[float]]] = {}
        for task, row in zip(tasks, returns, strict=True):
            groups.setdefault(str(task), []).append(row)
        if len(groups) > MAX_TASK_GROUPS:
            raise MetarlError(
                f"compare --by-task: the {len(tasks)} tasks of {name} take {len(groups)} different "
                f"values; splitting needs at most {MAX_TASK_GROUPS} (cheetah-dir's two directions, say)"
            )
        for task in sorted(groups):
            members = groups[task]
            row = [label, task, str(len(members))]
            for k in range(steps):
                if k >= width:
                    row.append("")
                    continue
                mean, stderr = _mean_and_stderr([m[k] for m in members])
                row.append(f"{mean:.2f} ± {stderr:.2f}" if len(members) > 1 else f"{mean:.2f}")
            rows.append(row)
    lines = ["return by held-out task, mean ± standard error over that task's draws"]
    lines += _format_rows(header, rows)
    return "\n".join(lines)


def _mean_and_stderr(values: list[float]) -> tuple[float, float]:
    """Mean of ``values`` and its standard error (sample standard deviation / √n; 0 for one)."""
    import math

    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return mean, sd / math.sqrt(len(values))


_SEED_SUFFIX = re.compile(r"[_-]?seed\d+$")


def seed_groups(results: list[dict[str, Any]]) -> list[str]:
    """The group each result pools into as one training seed: its file's stem less a trailing
    ``seed<N>`` (``maml_trpo_lr0.2_seed1.json`` -> ``maml_trpo_lr0.2``) where that stem begins with
    the result's method, so that variants of one learner (an ablation, a tuning) pool apart;
    else its method."""
    groups = []
    for r in results:
        stem = Path(r["path"]).stem if r.get("path") else ""
        variant = _SEED_SUFFIX.sub("", stem)
        groups.append(variant if variant != stem and variant.startswith(r["method"]) else r["method"])
    return groups


def pool_seeds(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each group's results as one (:func:`seed_groups`: a method, or a variant of it told by the
    file names): per step, the mean over its results (its training seeds) and, where there are
    several, the standard error across them instead of across tasks. ``seeds`` in a pooled result
    counts them and ``group`` names it. Order follows each group's first result."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r, group in zip(results, seed_groups(results), strict=True):
        groups.setdefault(group, []).append(r)
    pooled = []
    for group, members in groups.items():
        if len(members) == 1:
            pooled.append({**members[0], "seeds": 1, "group": group})
            continue
        steps = min(len(r["mean_return"]) for r in members)
        pairs = [_mean_and_stderr([r["mean_return"][k] for r in members]) for k in range(steps)]
        means, errors = [m for m, _ in pairs], [e for _, e in pairs]
        first = {k: v for k, v in members[0].items() if k not in ("path", "train_seed")}
        pooled.append(
            {
                **first,
                "steps": members[0]["steps"][:steps],
                "mean_return": means,
                "stderr": errors,
                "seeds": len(members),
                "group": group,
            }
        )
    return pooled


def pool_training_curves(
    runs: list[tuple[Path, dict[str, tuple[list[int], list[float]]]]], window: int = 5
) -> list[dict[str, Any]]:
    """The training curves of run directories pooled by name less a trailing ``seed<N>``
    (``maml_trpo_seed0`` and ``maml_trpo_seed1`` -> ``maml_trpo``): per tag, each seed's curve
    smoothed (moving average of ``window``), then the mean and standard error across seeds at the
    iterations every seed has logged (a seed still training cuts its group short). Each entry
    has ``group``, ``seeds`` and ``curves`` (tag -> steps, means, standard errors); order follows
    each group's first run."""
    groups: dict[str, list[dict[str, tuple[list[int], list[float]]]]] = {}
    for path, curves in runs:
        groups.setdefault(_SEED_SUFFIX.sub("", path.name) or path.name, []).append(curves)
    pooled = []
    for group, members in groups.items():
        curves = {}
        for tag in TRAINING_TAGS:
            # by iteration, the last value logged wins: a resumed run may log an iteration twice
            series = [dict(zip(m[tag][0], _smooth(m[tag][1], window), strict=True)) for m in members]
            steps = sorted(set.intersection(*(set(s) for s in series)))
            pairs = [_mean_and_stderr([s[k] for s in series]) for k in steps]
            curves[tag] = (steps, [m for m, _ in pairs], [e for _, e in pairs])
        pooled.append({"group": group, "seeds": len(members), "curves": curves})
    return pooled


# A legend under its panel, where it hides no curve.
_LEGEND_BELOW = {"loc": "upper center", "bbox_to_anchor": (0.5, -0.2), "fontsize": "small"}


def plot(inputs: list[str | Path], out: str | Path, title: str | None = None, seeds: bool = False) -> Path:
    """Write a PNG: return against adaptation steps for every evaluate result, with standard
    error bars, and the training curves of every run directory, side by side. ``seeds`` draws
    each method once, pooled over its results (:func:`pool_seeds`: mean over training seeds,
    error bars the standard error across them) and over its run directories
    (:func:`pool_training_curves`: a band of ± one standard error), in one colour per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results, runs = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            runs.append((path, training_curves(path)))
        else:
            results.append(load_results([path])[0])
    panels = int(bool(results)) + int(bool(runs))
    if panels == 0:
        raise MetarlError("plot needs at least one evaluate JSON or run directory")
    if seeds:
        results = pool_seeds(results)
        pooled_runs = pool_training_curves(runs)
        # one colour per method in both panels, so its results and its training read together
        cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        names = [r["group"] for r in results if r["method"] != "oracle"] + [g["group"] for g in pooled_runs]
        colours = {name: cycle[i % len(cycle)] for i, name in enumerate(dict.fromkeys(names))}
    curve_count = len(pooled_runs) if seeds else len(runs)
    # The legends sit below the panels; grow the figure with the longest so the axes keep their size.
    legend_rows = max((len(results) + 1) // 2, 2 * curve_count if len(runs) > 1 else 0)
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 3.4 + 0.22 * legend_rows), squeeze=False)
    axes = list(axes[0])
    if results:
        ax = axes.pop(0)
        if seeds:
            # A pooled method's bars are the s.e. across its seeds, the others' across tasks; the
            # legend says which, as the axis label has no room for both.
            labels = [
                r["group"] + (f" ({r['seeds']} seeds; ± s.e. across seeds)" if r["seeds"] > 1 else "")
                for r in results
            ]
        else:
            labels = result_labels(results)
        for r, label in zip(results, labels, strict=True):
            if len(r["steps"]) == 1 and r["method"] == "oracle":  # a ceiling, not a curve
                ax.axhline(r["mean_return"][0], color="k", linestyle=":", label=label)
                continue
            style = {"marker": "o", "capsize": 3, "label": label}
            if seeds:
                style["color"] = colours.get(r["group"])
            ax.errorbar(r["steps"], r["mean_return"], yerr=r["stderr"], **style)
        ax.set_xlabel("adaptation steps")
        metric = results[0].get("metric", "return")
        ax.set_ylabel(f"mean {metric} (± s.e.)")
        ax.set_xticks(sorted({k for r in results for k in r["steps"]}))
        ax.set_title(title or ", ".join(sorted({r.get("env_id", "") for r in results})))
        ax.grid(alpha=0.3)
        # Below the panel: inside it, "best" placement still covers points when the curves span it.
        ax.legend(**_LEGEND_BELOW, ncol=2)
    if runs:
        ax = axes.pop(0)
        if seeds:
            for g in pooled_runs:
                many = g["seeds"] > 1
                name = f"{g['group']} ({g['seeds']} seeds; ± s.e. across seeds)" if many else g["group"]
                for tag, style in zip(TRAINING_TAGS, ("--", "-"), strict=True):
                    steps, means, errors = g["curves"][tag]
                    label = f"{name}: {'before' if 'pre' in tag else 'after'} adaptation"
                    ax.plot(steps, means, style, color=colours[g["group"]], label=label)
                    if many:
                        low = [m - e for m, e in zip(means, errors, strict=True)]
                        high = [m + e for m, e in zip(means, errors, strict=True)]
                        ax.fill_between(steps, low, high, color=colours[g["group"]], alpha=0.2, linewidth=0)
        else:
            for path, curves in runs:
                for tag, style in zip(TRAINING_TAGS, ("--", "-"), strict=True):
                    steps, values = curves[tag]
                    label = f"{path.name}: {'before' if 'pre' in tag else 'after'} adaptation"
                    ax.plot(steps, _smooth(values), style, label=label)
        ax.set_xlabel("meta-iteration")
        ax.set_ylabel("return (moving average of 5)")
        ax.set_title("training")
        ax.grid(alpha=0.3)
        if len(runs) > 1:  # four or more curves: below the panel, where it hides none of them
            ax.legend(**_LEGEND_BELOW)
        else:
            ax.legend()
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _smooth(values: list[float], window: int = 5) -> list[float]:
    out = []
    for i in range(len(values)):
        chunk = values[max(0, i - window + 1) : i + 1]
        out.append(sum(chunk) / len(chunk))
    return out


__all__ = [
    "compare_table",
    "load_result",
    "load_results",
    "normalized_scores",
    "plot",
    "pool_training_curves",
    "result_labels",
    "seed_groups",
    "training_curves",
]


def seed_table(results: list[dict[str, Any]], references: tuple[float, float] | None = None) -> str:
    """Plain-text table of each method over its training seeds: per step, the mean over seeds
    of the normalized score (or of the return, without random and oracle results) ± its
    standard error across seeds, and how many seeds there are. The random and oracle results
    are the references, not rows, unless ``references`` (random return at step 0, oracle
    return: the paper's, say) replaces them. Results of one group (:func:`seed_groups`: a
    method, or a variant of it told by the file names) are its seeds: each is one training run
    (``train_seed`` in the evaluate JSON), all scored on the same held-out tasks."""
    from collections import defaultdict

    labels = result_labels(results)
    scores, note = _scores(results, labels, references)
    values = scores if scores is not None else [r["mean_return"] for r in results]
    what = "normalized score" if scores is not None else results[0].get("metric", "return")
    against = f", against random {references[0]:g} and oracle {references[1]:g}" if references else ""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, (r, group) in enumerate(zip(results, seed_groups(results), strict=True)):
        if scores is None or references is not None or r["method"] not in ("random", "oracle"):
            groups[group].append(i)
    tasks = {tuple(r.get("tasks", [])) for r in results}
    if len(tasks) > 1:
        raise MetarlError("compare --seeds: the results were evaluated on different held-out tasks")
    steps = max(len(r["steps"]) for r in results)
    header = ["method", "seeds"] + [f"step {k}" for k in range(steps)]
    rows = []
    for method, members in groups.items():
        seeds = [results[i].get("train_seed") for i in members]
        if None not in seeds and len(set(seeds)) != len(seeds):
            raise MetarlError(f"compare --seeds: {method} has two results from training seed {seeds[0]}")
        row = [method, str(len(members))]
        for k in range(steps):
            column = [values[i][k] for i in members if k < len(values[i])]
            if not column:
                row.append("")
                continue
            mean, stderr = _mean_and_stderr(column)
            row.append(f"{_fixed(mean)} ± {stderr:.2f}" if len(column) > 1 else _fixed(mean))
        rows.append(row)
    lines = [f"{what}, mean over training seeds ± standard error across seeds{against}"]
    lines += _format_rows(header, rows)
    if note:
        lines.append(note)
    return "\n".join(lines)


def paper_table(results: list[dict[str, Any]], seeds: bool = False) -> str:
    """Plain-text table that scores ``results`` against the MAML paper's random and oracle
    returns instead of their own, beside the paper's returns and scores for the same family
    (:mod:`metarl.paper`); with ``seeds``, also :func:`seed_table` against those references."""
    from metarl.paper import figure5, paper_references

    envs = sorted({str(r.get("env_id", "?")) for r in results})
    if len(envs) != 1:
        found = ", ".join(envs)
        raise MetarlError(f"compare --paper: the results come from {len(envs)} envs ({found}): give one")
    references = paper_references(envs[0])
    low, high = references
    labels = result_labels(results)
    steps = max(len(r["steps"]) for r in results)
    header = ["method"] + [f"step {k}" for k in range(steps)] + [f"score {k}" for k in range(steps)]

    def cells(values: list[str]) -> list[str]:
        return values[:steps] + [""] * (steps - len(values[:steps]))

    def scores(returns: list[float] | tuple[float, ...]) -> list[str]:
        return cells([_fixed((v - low) / (high - low)) for v in returns])

    rows = []
    for label, r in zip(labels, results, strict=True):
        returns = [f"{m:.2f} ± {e:.2f}" for m, e in zip(r["mean_return"], r["stderr"], strict=True)]
        rows.append([label, *cells(returns), *scores(r["mean_return"])])
    for method, returns in figure5(envs[0]).items():
        rows.append([f"paper: {method}", *cells([f"{v:g}" for v in returns]), *scores(returns)])
    lines = [
        f"against the MAML paper's references for {envs[0]} (Finn et al. 2017, Figure 5): "
        f"random {low:g} before adaptation, oracle {high:g}"
    ]
    lines += _format_rows(header, rows)
    if seeds:
        lines += ["", seed_table(results, references)]
    return "\n".join(lines)

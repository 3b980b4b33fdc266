"""Pictures and tables of results: return against adaptation steps (the MAML paper's Figure 5),
training curves from a run's TensorBoard events, and a methods × steps comparison table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from metarl.errors import MetarlError

TRAINING_TAGS = ("return/pre_adaptation", "return/post_adaptation")


def load_result(path: str | Path) -> dict[str, Any]:
    """An ``evaluate --json`` file, with its method name (the file's stem if it has none)."""
    path = Path(path)
    try:
        result = json.loads(path.read_text())
    except FileNotFoundError:
        raise MetarlError(f"no such file: {str(path)!r}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MetarlError(f"{str(path)!r} is not JSON ({exc})") from None
    if "mean_mse" in result and "mean_return" not in result:  # supervised: lower is better
        result["mean_return"], result["metric"] = result["mean_mse"], "query MSE"
    if not isinstance(result, dict) or not {"steps", "mean_return", "stderr"} <= set(result):
        raise MetarlError(f"{str(path)!r} is not an evaluate result (written by metarl evaluate --json)")
    result.setdefault("method", path.stem)
    return result


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


def normalized_scores(results: list[dict[str, Any]]) -> dict[str, list[float]] | None:
    """(R_k − R_random(0)) / (R_oracle − R_random(0)) per method and step, when the results
    include a ``random`` and an ``oracle`` method (the oracle's return is its step-0 return)."""
    by_method = {r["method"]: r for r in results}
    if "random" not in by_method or "oracle" not in by_method:
        return None
    low = by_method["random"]["mean_return"][0]
    span = by_method["oracle"]["mean_return"][0] - low
    if span == 0:
        return None
    return {r["method"]: [(v - low) / span for v in r["mean_return"]] for r in results}


def compare_table(results: list[dict[str, Any]]) -> str:
    """Plain-text table: one row per method, mean ± standard error after each step, and the
    normalized score of each step when random and oracle results are among them."""
    steps = max(len(r["steps"]) for r in results)
    scores = normalized_scores(results)
    header = ["method"] + [f"step {k}" for k in range(steps)]
    if scores:
        header += [f"score {k}" for k in range(steps)]
    rows = []
    for r in results:
        row = [r["method"]]
        for k in range(steps):
            if k < len(r["mean_return"]):
                row.append(f"{r['mean_return'][k]:.2f} ± {r['stderr'][k]:.2f}")
            else:
                row.append("")
        if scores:
            row += [f"{v:.2f}" for v in scores[r["method"]]] + [""] * (steps - len(scores[r["method"]]))
        rows.append(row)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(f"{x:<{w}}" for x, w in zip(header, widths, strict=True))]
    lines += ["  ".join(f"{x:<{w}}" for x, w in zip(row, widths, strict=True)) for row in rows]
    envs = sorted({r.get("env_id", "?") for r in results})
    tasks = sorted({r.get("num_tasks", 0) for r in results})
    lines.append(f"env {', '.join(envs)}; held-out tasks {', '.join(map(str, tasks))}")
    if scores:
        lines.append("score = (R_k - R_random(0)) / (R_oracle - R_random(0))")
    return "\n".join(lines)


def plot(inputs: list[str | Path], out: str | Path, title: str | None = None) -> Path:
    """Write a PNG: return against adaptation steps for every evaluate result, with standard
    error bars, and the training curves of every run directory, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results, runs = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            runs.append((path, training_curves(path)))
        else:
            results.append(load_result(path))
    panels = int(bool(results)) + int(bool(runs))
    if panels == 0:
        raise MetarlError("plot needs at least one evaluate JSON or run directory")
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.2), squeeze=False)
    axes = list(axes[0])
    if results:
        ax = axes.pop(0)
        for r in results:
            if len(r["steps"]) == 1 and r["method"] == "oracle":  # a ceiling, not a curve
                ax.axhline(r["mean_return"][0], color="k", linestyle=":", label="oracle")
                continue
            ax.errorbar(
                r["steps"], r["mean_return"], yerr=r["stderr"], marker="o", capsize=3, label=r["method"]
            )
        ax.set_xlabel("adaptation steps")
        metric = results[0].get("metric", "return")
        ax.set_ylabel(f"mean {metric} (± s.e.)")
        ax.set_xticks(sorted({k for r in results for k in r["steps"]}))
        ax.set_title(title or ", ".join(sorted({r.get("env_id", "") for r in results})))
        ax.grid(alpha=0.3)
        ax.legend()
    if runs:
        ax = axes.pop(0)
        for path, curves in runs:
            for tag, style in zip(TRAINING_TAGS, ("--", "-"), strict=True):
                steps, values = curves[tag]
                label = f"{path.name}: {'before' if 'pre' in tag else 'after'} adaptation"
                ax.plot(steps, _smooth(values), style, label=label)
        ax.set_xlabel("meta-iteration")
        ax.set_ylabel("return (moving average of 5)")
        ax.set_title("training")
        ax.grid(alpha=0.3)
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


__all__ = ["compare_table", "load_result", "normalized_scores", "plot", "training_curves"]

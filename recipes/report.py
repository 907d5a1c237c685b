"""Run records: metrics as JSONL (+ TensorBoard when installed) and the learning-curve report (PNG + HTML)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class RunLog:
    """Appends one JSON object per event to ``<dir>/metrics.jsonl`` and mirrors numbers to TensorBoard.

    Lines are flushed as written, so a killed run keeps everything it logged; a resumed run first cuts the file back to
    its checkpoints (:func:`rewind_metrics`), then appends.
    """

    def __init__(self, directory: str | Path, *, tensorboard: bool = True):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / "metrics.jsonl"
        self._file = self.path.open("a", encoding="utf-8")
        self._writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional: JSONL is the record
                SummaryWriter = None
            if SummaryWriter is not None:
                self._writer = SummaryWriter(str(self.directory / "tensorboard"))

    def log(self, stage: str, step: int, metrics: dict[str, Any]) -> None:
        record = {"stage": stage, "step": step, "time": time.time(), **metrics}
        self._file.write(json.dumps(record, default=_jsonable) + "\n")
        self._file.flush()
        if self._writer is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self._writer.add_scalar(f"{stage}/{key}", value, step)
            self._writer.flush()

    def close(self) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def rewind_metrics(path: str | Path, keep: Callable[[dict[str, Any]], bool]) -> int:
    """Keep the records of a ``metrics.jsonl`` that ``keep`` accepts, each (stage, step, label) once, and drop a line
    a kill tore; the file is replaced atomically. A resumed run calls it before logging again. Returns the count kept.
    """
    from agentenv.policies.checkpoint import crash_point, fsync_dir, fsync_file

    path = Path(path)
    if not path.exists():
        return 0
    kept, seen = [], set()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # torn by a kill while it was written
            continue
        key = (record.get("stage"), record.get("step"), record.get("label")) if isinstance(record, dict) else None
        if key is None or key in seen or not keep(record):
            continue
        seen.add(key)
        kept.append(line + "\n")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(kept), encoding="utf-8")
    fsync_file(tmp)
    crash_point("metrics.rewound")
    tmp.replace(path)
    fsync_dir(path.parent)
    return len(kept)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_run(metrics: list[dict[str, Any]], evaluations: dict[str, dict[str, Any]], path: str | Path) -> Path | None:
    """Learning curves (SFT loss, RL success and return per iteration) and success before/after, as one PNG.

    Returns the path, or ``None`` when matplotlib is not installed (the JSON and HTML still tell the story).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    sft = [m for m in metrics if m.get("stage") == "sft"]
    rl = [m for m in metrics if m.get("stage") == "rl"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    ax = axes[0]
    if sft:
        ax.plot([m["step"] for m in sft], [m["sft_loss"] for m in sft], color="tab:purple")
    ax.set(title="SFT loss", xlabel="step")
    ax = axes[1]
    if rl:
        steps = [m["step"] for m in rl]
        ax.plot(steps, [m.get("success_rate", 0) for m in rl], marker="o", label="success (train tasks)")
        ax.plot(steps, [m.get("mean_return", 0) for m in rl], marker=".", label="mean return")
        ax.legend(fontsize=8)
    ax.set(title="RL iterations", xlabel="iteration", ylim=(-0.05, 1.05))
    ax = axes[2]
    labels, rates, lows, highs = [], [], [], []
    for label, summary in evaluations.items():
        labels.append(label)
        rates.append(summary.get("success_rate", 0.0))
        lows.append(rates[-1] - summary.get("success_ci_low", rates[-1]))
        highs.append(summary.get("success_ci_high", rates[-1]) - rates[-1])
    if labels:
        ax.bar(range(len(labels)), rates, yerr=[lows, highs], capsize=4, color="tab:green")
        ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
    ax.set(title="success on held-out test tasks (95% CI)", ylim=(0, 1.05))
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(
    directory: str | Path, title: str, evaluations: dict[str, dict[str, Any]], recipe: dict[str, Any]
) -> Path:
    """``<dir>/report.html``: the evaluation table, the curves (``curves.png``) and the recipe that made them."""
    from html import escape

    directory = Path(directory)
    png = plot_run(read_metrics(directory / "metrics.jsonl"), evaluations, directory / "curves.png")
    columns = ("success_rate", "success_ci_low", "success_ci_high", "mean_return", "mean_turns", "invalid_rate",
               "truncation_rate")  # fmt: skip
    head = "".join(f"<th>{escape(c)}</th>" for c in ("evaluation", "episodes", *columns))
    rows = "".join(
        f"<tr><td>{escape(label)}</td><td>{s.get('episodes', 0)}</td>"
        + "".join(f"<td>{_cell(s.get(c))}</td>" for c in columns)
        + "</tr>"
        for label, s in evaluations.items()
    )
    image = f"<img src='{png.name}' style='max-width:100%'>" if png else "<p>(matplotlib not installed: no plot)</p>"
    page = (
        f"<!doctype html><meta charset=utf-8><title>{escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:70em;margin:auto}td,th{padding:.2em .6em;text-align:right}"
        "td:first-child{text-align:left}pre{background:#f4f4f4;padding:.5em}</style>"
        f"<h1>{escape(title)}</h1><table><tr>{head}</tr>{rows}</table>{image}"
        f"<h2>recipe</h2><pre>{escape(json.dumps(recipe, indent=1))}</pre>"
    )
    out = directory / "report.html"
    out.write_text(page, encoding="utf-8")
    return out


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "-" if not math.isfinite(value) else f"{value:.3f}"
    return "-" if value is None else str(value)

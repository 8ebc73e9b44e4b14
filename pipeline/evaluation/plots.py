"""The report's plots (pipeline/evaluation/html_report.py), drawn with matplotlib.

Each function takes values already computed (by TFMA, or recorded by the Trainer) and returns the
plot as a `data:image/svg+xml;base64,...` URI, so the page needs no file and no network. Nothing
here computes a metric TFMA has; the only arithmetic is re-binning TFMA's calibration buckets and
reading ROC/PR points off its confusion matrices.
"""

from __future__ import annotations

import base64
import io
import math

# Figures made without pyplot: no backend is chosen or changed (a notebook's inline plots keep
# theirs) and no global figure list grows.
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

WIDTH, HEIGHT = 5.2, 3.2
ACCENT, MUTED, BAD = "#1f6feb", "#8b949e", "#d1242f"


def _uri(fig) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="svg")
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode()


def _figure(width=WIDTH, height=HEIGHT):
    fig = Figure(figsize=(width, height))
    ax = fig.subplots()
    ax.grid(alpha=0.3)
    return fig, ax


def learning_curves(history: dict, keys: dict, best_epoch: int | None, title: str) -> str | None:
    """Loss (train and validation) per epoch on the left axis and the head's primary validation
    metric on the right; the epoch the head is served with marked. `keys`: {'loss', 'val_loss',
    'metric', 'val_metric'} -> history key (missing keys are left out)."""
    series = {k: history.get(v) for k, v in keys.items() if history.get(v)}
    if not series:
        return None
    fig, ax = _figure()
    epochs = range(1, 1 + max(len(v) for v in series.values()))
    if "loss" in series:
        ax.plot(epochs[: len(series["loss"])], series["loss"], color=MUTED, label="train loss")
    if "val_loss" in series:
        ax.plot(
            epochs[: len(series["val_loss"])], series["val_loss"], color=ACCENT, label="val loss"
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    handles, labels = ax.get_legend_handles_labels()
    if "val_metric" in series:
        right = ax.twinx()
        values = series["val_metric"]
        right.plot(
            epochs[: len(values)], values, color="#2da44e", ls="--", label=keys["val_metric"]
        )
        right.set_ylabel(keys["val_metric"].removeprefix("val_"))
        h2, l2 = right.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    if best_epoch:
        ax.axvline(best_epoch, color=BAD, lw=1, ls=":")
        handles.append(Line2D([], [], color=BAD, ls=":"))
        labels.append(f"served: epoch {best_epoch}")
    ax.legend(handles, labels, fontsize=7, loc="best")
    ax.set_title(title, fontsize=9)
    return _uri(fig)


def slice_bars(
    rows: list, overall: float | None, metric: str, weakest: set, title: str, few: int = 0
) -> str:
    """One bar per slice (value, with its example count), the overall value as a line, the
    weakest slices in red, slices of fewer than `few` examples in grey.
    `rows`: [(slice name, value, examples)]."""
    height = max(HEIGHT, 0.28 * len(rows) + 1.0)
    fig, ax = _figure(height=height)
    values = [r[1] for r in rows]
    colors = [BAD if r[0] in weakest else MUTED if r[2] < few else ACCENT for r in rows]
    ax.barh(range(len(rows)), values, color=colors)
    ax.set_yticks(range(len(rows)), [f"{r[0]} (n={int(r[2])})" for r in rows])
    ax.tick_params(axis="y", labelsize=7)
    ax.invert_yaxis()
    if overall is not None:
        ax.axvline(overall, color="black", lw=1, ls="--", label=f"overall {overall:.3f}")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_xlabel(metric)
    ax.set_title(title, fontsize=9)
    return _uri(fig)


def roc_and_pr(matrices: list, auc: float | None, title: str) -> tuple[str, str]:
    """ROC and precision-recall curves from TFMA's confusion matrices at thresholds."""
    points = sorted(
        ((m.false_positive_rate, m.recall, m.precision) for m in matrices), key=lambda p: p[0]
    )
    fig, ax = _figure(4.0, 3.4)
    ax.plot([p[0] for p in points], [p[1] for p in points], color=ACCENT)
    ax.plot([0, 1], [0, 1], color=MUTED, ls=":")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"{title}: ROC" + (f" (AUC {auc:.3f})" if auc is not None else ""), fontsize=9)
    roc = _uri(fig)
    by_recall = sorted(((p[1], p[2]) for p in points if p[1] > 0), key=lambda p: p[0])
    fig, ax = _figure(4.0, 3.4)
    ax.plot([p[0] for p in by_recall], [p[1] for p in by_recall], color=ACCENT)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{title}: precision-recall", fontsize=9)
    return roc, _uri(fig)


def reliability(buckets: list, bins: int = 10) -> tuple[list, float] | None:
    """TFMA's calibration histogram re-binned to `bins` equal-width bins of the predicted
    probability: ([(mean prediction, mean label, weight) per non-empty bin], expected
    calibration error: the examples' weighted mean |mean label - mean prediction| over them)."""
    sums = [[0.0, 0.0, 0.0] for _ in range(bins)]  # weight, label, prediction
    for b in buckets:
        if b.num_weighted_examples.value <= 0:
            continue
        low = b.lower_threshold_inclusive
        mid = 0.0 if math.isinf(low) else low
        i = min(bins - 1, max(0, int(mid * bins)))
        sums[i][0] += b.num_weighted_examples.value
        sums[i][1] += b.total_weighted_label.value
        sums[i][2] += b.total_weighted_refined_prediction.value
    total = sum(s[0] for s in sums)
    if total <= 0:
        return None
    kept = [(s[2] / s[0], s[1] / s[0], s[0]) for s in sums if s[0] > 0]
    return kept, sum(w / total * abs(label - pred) for pred, label, w in kept)


def calibration(
    buckets: list, title: str, bins: int = 10, before: list | None = None
) -> tuple[str, float, float | None] | None:
    """Reliability diagram from TFMA's calibration histogram, with the one of the probabilities
    before the head's temperature (`before`, a calibrated head's) when given: (figure, ECE,
    ECE before or None)."""
    after = reliability(buckets, bins)
    if after is None:
        return None
    earlier = reliability(before, bins) if before else None
    fig, ax = _figure(4.0, 3.4)
    ax.plot([0, 1], [0, 1], color=MUTED, ls=":", label="perfect")
    if earlier:
        ax.plot(
            [k[0] for k in earlier[0]],
            [k[1] for k in earlier[0]],
            "o--",
            color=MUTED,
            label=f"before temperature (ECE {earlier[1]:.3f})",
        )
    label = "model" if earlier is None else "calibrated"
    ax.plot([k[0] for k in after[0]], [k[1] for k in after[0]], "o-", color=ACCENT, label=label)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("fraction positive")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(f"{title}: reliability (ECE {after[1]:.3f})", fontsize=9)
    return _uri(fig), after[1], earlier[1] if earlier else None


def confusion(matrix: list[list[float]], names: list[str], title: str) -> str:
    """Counts of actual (rows) by predicted (columns) class."""
    n = len(names)
    fig, ax = _figure(max(3.6, 0.45 * n + 2), max(3.2, 0.45 * n + 1.6))
    ax.grid(False)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(n), names, fontsize=7)
    peak = max((v for row in matrix for v in row), default=0)
    for i in range(n):
        for j in range(n):
            v = matrix[i][j]
            if v:
                color = "white" if v > peak / 2 else "black"
                ax.text(j, i, f"{v:g}", ha="center", va="center", fontsize=6, color=color)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(f"{title}: confusion matrix", fontsize=9)
    return _uri(fig)


def label_bars(values: dict, metric: str, title: str) -> str:
    """One bar per label, sorted from the best to the worst."""
    items = sorted(values.items(), key=lambda kv: kv[1], reverse=True)
    fig, ax = _figure(height=max(HEIGHT, 0.25 * len(items) + 1.0))
    ax.barh(range(len(items)), [v for _, v in items], color=ACCENT)
    ax.set_yticks(range(len(items)), [k for k, _ in items], fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0.5, color=MUTED, ls=":", lw=1)
    ax.set_xlabel(metric)
    ax.set_title(f"{title}: {metric} per label", fontsize=9)
    return _uri(fig)


def predicted_vs_actual(rows: list, title: str) -> str:
    """Per slice, the mean prediction against the mean label (the diagonal: no bias), and the
    residual (mean prediction - mean label). `rows`: [(slice, mean label, mean prediction, n)]."""
    fig = Figure(figsize=(8.0, max(3.2, 0.25 * len(rows) + 1.0)))
    left, right = fig.subplots(1, 2)
    labels = [r[1] for r in rows]
    preds = [r[2] for r in rows]
    lo, hi = min(labels + preds), max(labels + preds)
    left.grid(alpha=0.3)
    left.plot([lo, hi], [lo, hi], color=MUTED, ls=":")
    left.scatter(labels, preds, s=[8 + 40 * r[3] / max(x[3] for x in rows) for r in rows])
    left.set_xlabel("mean label")
    left.set_ylabel("mean prediction")
    left.set_title(f"{title}: per slice", fontsize=9)
    right.grid(alpha=0.3)
    residuals = [r[2] - r[1] for r in rows]
    right.barh(range(len(rows)), residuals, color=[BAD if v < 0 else ACCENT for v in residuals])
    right.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=7)
    right.invert_yaxis()
    right.axvline(0, color="black", lw=1)
    right.set_xlabel("mean prediction - mean label")
    right.set_title("residual by slice", fontsize=9)
    return _uri(fig)

"""report.html: one self-contained page per run that answers "is every head good enough, where
is it weak, should this model replace the published one?".

The page is built from what the run computed, never recomputed here: the Evaluator's TFMA
output (gates, per-slice metrics, TFMA's plots), the Trainer's training report (curves, chosen
epochs, the trivial baselines, the model's size), TFDV's statistics and the data gate's
warnings. Each head type says which plots its heads get (`HeadType.report_plots`); the plots are
drawn by pipeline/evaluation/plots.py and embedded as SVG images: no script, no network.
`components/report.py` (the RunReport step) reads the artifacts and writes the page.
"""

from __future__ import annotations

import html
import logging
import time
from dataclasses import dataclass, field

from pipeline.evaluation import plots
from pipeline.evaluation.report import tuned_values, versus_trivial
from pipeline.evaluation.summary import (
    MIN_SLICE_EXAMPLES,
    OVERALL,
    EvaluationSummary,
    examples_in,
    fmt,
    headline_metric,
)
from pipeline.monitoring.drift import Finding
from pipeline.spec import OutputSpec, Spec
from preprocessing.heads.base import uncalibrated_name

log = logging.getLogger(__name__)


@dataclass
class RunFacts:
    """What a run computed, as the page needs it."""

    spec: Spec
    summary: EvaluationSummary | None = None
    blessed: bool | None = None
    baseline_version: int | None = None
    training: dict | None = None  # the Trainer's (pipeline.constants.TRAINING_REPORT_FILE)
    rival_training: dict | None = None  # the BoostedTrainer's, the same file (trainer/gbdt.py)
    plot_data: dict = field(default_factory=dict)  # head -> TFMA plot name -> PlotData (overall)
    rows: dict = field(default_factory=dict)  # split -> examples
    missing: dict = field(default_factory=dict)  # split -> {column: fraction missing}
    warnings: list = field(default_factory=list)  # the data gate's
    anomalies: dict = field(default_factory=dict)  # split -> [(column, description)]
    drift: list = field(default_factory=list)  # the data gate's Findings (monitoring/drift.py)
    drift_title: str = ""  # what was compared with what; "" when nothing was
    run: str = ""
    created: str = field(
        default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    )


def _e(value) -> str:
    return html.escape(str(value))


def _img(uri: str | None, alt: str) -> str:
    return f'<img src="{uri}" alt="{_e(alt)}">' if uri else ""


def _table(header: list[str] | None, rows: list[list], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header or ())
    body = []
    for i, row in enumerate(rows):
        css = f' class="{classes[i]}"' if classes and classes[i] else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>")
    thead = f"<thead><tr>{head}</tr></thead>" if head else ""
    return f"<table>{thead}<tbody>{''.join(body)}</tbody></table>"


def _guarded(section, *args, default=None):
    """A section, or a line saying why it could not be drawn: the report never stops a run
    (the pusher waits for it), and the rest of the page is still worth having. `default`: how
    the failure is returned when the section returns (text, images)."""
    try:
        return section(*args)
    except Exception as e:  # noqa: BLE001 - any failure of one section
        log.warning("report: section %s failed: %s", section.__name__, e, exc_info=True)
        text = f"<p class='verdict no'>This section could not be drawn: {_e(repr(e))}</p>"
        return text if default is None else (text, default)


def history_keys(spec: Spec, head: OutputSpec) -> dict:
    """The training history's keys for a head (Keras prefixes them only with several heads)."""
    prefix = f"{head.name}_" if len(spec.outputs) > 1 else ""
    primary = head.head_type.primary
    return {
        "loss": f"{prefix}loss",
        "val_loss": f"val_{prefix}loss",
        "val_metric": f"val_{prefix}{primary}",
    }


def class_names(head: OutputSpec) -> list[str] | None:
    return list(head.options.get("classes") or []) or None


# -- the sections ---------------------------------------------------------------------------------
def _gates(facts: RunFacts, head: OutputSpec) -> str:
    if facts.summary is None:
        return "<p>No evaluation in this run.</p>"
    rows = [r for r in facts.summary.gate_rows(facts.spec) if r.head == head.name]
    if not rows:
        return "<p>No gate on this head: it is reported, never judged.</p>"
    published = "published model" + (
        f" (v{facts.baseline_version})" if facts.baseline_version else ""
    )
    rivals = facts.summary.rival_names()  # boosted trees per head (evaluation.baselines)
    table = _table(
        ["metric", "value", published, *rivals, "threshold", "result"],
        [
            [
                r.metric,
                fmt(r.value),
                fmt(None if r.beats_rival else r.baseline),
                *(fmt(r.rivals.get(name)) for name in rivals),
                r.threshold,
                "pass" if r.passed else "FAIL",
            ]
            for r in rows
        ],
        ["pass" if r.passed else "fail" for r in rows],
    )
    why = "".join(f"<li>{_e(r.metric)}: {_e(r.why)}</li>" for r in rows if not r.passed)
    return table + (f"<ul class='why'>{why}</ul>" if why else "")


def _training(facts: RunFacts, head: OutputSpec) -> tuple[str, list]:
    report = facts.training
    if not report or head.name not in report.get("heads", {}):
        return "", []
    h = report["heads"][head.name]
    rows = [
        [metric, fmt(value), fmt(base), {None: "", True: "yes", False: "NO"}[better]]
        for metric, value, base, better in versus_trivial(h)
    ]
    text = (
        f"<p>Validation split: {h['examples']} examples with this head's label "
        f"({h.get('train_examples', '?')} in training).</p>"
        + _table(["metric", "model", "trivial predictor", "better?"], rows)
    )
    c = report.get("calibration", {}).get(head.name)
    if c:
        text += (
            f"<p>Calibrated (temperature {c['temperature']:g}, fitted on these validation rows): "
            f"log loss {c['log_loss_before']:.4f} &rarr; {c['log_loss_after']:.4f}, expected "
            f"calibration error {c['ece_before']:.4f} &rarr; {c['ece_after']:.4f}.</p>"
        )
    best = report.get("best_epochs", {}).get(head.name)
    curve = plots.learning_curves(
        report.get("history", {}), history_keys(facts.spec, head), best, head.name
    )
    return text, [(curve, f"{head.name}: learning curves")]


def _slices(facts: RunFacts, head: OutputSpec) -> tuple[str, list]:
    if facts.summary is None:
        return "", []
    metric = headline_metric(head)
    key = head.head_type.summary_key(metric)
    per_slice = facts.summary.metrics.get(head.name, {})
    rows = []
    for name, values in sorted(per_slice.items()):
        if name == OVERALL or key not in values:
            continue
        rows.append((name, values[key], examples_in(values) or 0))
    if not rows:
        return "", []
    weakest = {w.slice for w in facts.summary.weakest_slices(facts.spec) if w.head == head.name}
    overall = facts.summary.value(head.name, key)
    note = (
        f"<p>Weakest slice: {_e(', '.join(sorted(weakest)))} (red; grey: fewer than "
        f"{MIN_SLICE_EXAMPLES} examples, never called the weakest).</p>"
        if weakest
        else ""
    )
    title = f"{head.name}: {metric} by slice"
    uri = plots.slice_bars(rows, overall, metric, weakest, title, few=MIN_SLICE_EXAMPLES)
    return note, [(uri, f"{head.name}: {metric} by slice")]


def _head_plots(facts: RunFacts, head: OutputSpec) -> tuple[str, list]:
    """The plots the head's type asks for (HeadType.report_plots)."""
    data = facts.plot_data.get(head.name, {})
    out, notes = [], []
    summary = facts.summary
    for kind in head.head_type.report_plots:
        if kind == "roc_pr" and "confusion_matrix_at_thresholds" in data:
            table = head.head_type.metric_table
            auc = (
                summary.value(head.name, table["auc"].tfma_key)
                if summary and "auc" in table
                else None
            )
            roc, pr = plots.roc_and_pr(
                data["confusion_matrix_at_thresholds"].matrices, auc, head.name
            )
            out += [(roc, f"{head.name}: ROC"), (pr, f"{head.name}: precision-recall")]
        elif kind == "calibration" and "calibration_histogram_buckets" in data:
            # A calibrated head's probabilities before its temperature, as TFMA judged them.
            before = facts.plot_data.get(uncalibrated_name(head.name), {})
            before = before.get("calibration_histogram_buckets")
            drawn = plots.calibration(
                data["calibration_histogram_buckets"].buckets,
                head.name,
                before=before.buckets if before is not None else None,
            )
            if drawn:
                out.append((drawn[0], f"{head.name}: reliability diagram"))
                notes.append(
                    f"Expected calibration error: {drawn[1]:.4f}"
                    + (
                        f" (before its temperature: {drawn[2]:.4f})."
                        if drawn[2] is not None
                        else "."
                    )
                )
        elif kind == "confusion" and "multi_class_confusion_matrix_at_thresholds" in data:
            matrices = data["multi_class_confusion_matrix_at_thresholds"].matrices
            if matrices:
                entries = matrices[0].entries
                n = 1 + max(max(e.actual_class_id, e.predicted_class_id) for e in entries)
                names = class_names(head) or [str(i) for i in range(n)]
                n = max(n, len(names))
                names += [str(i) for i in range(len(names), n)]
                matrix = [[0.0] * n for _ in range(n)]
                for e in entries:
                    if e.actual_class_id >= 0 and e.predicted_class_id >= 0:
                        matrix[e.actual_class_id][e.predicted_class_id] = e.num_weighted_examples
                out.append((plots.confusion(matrix, names, head.name), f"{head.name}: confusion"))
        elif kind == "label_auc" and summary is not None:
            overall = summary.metrics.get(head.name, {}).get(OVERALL, {})
            names = class_names(head)
            values = {}
            for key, value in overall.items():
                if key.startswith("auc/class_"):
                    i = int(key.rsplit("_", 1)[1])
                    values[names[i] if names and i < len(names) else f"class {i}"] = value
            if values:
                out.append(
                    (plots.label_bars(values, "AUC", head.name), f"{head.name}: AUC per label")
                )
        elif kind == "slice_means" and summary is not None:
            rows = []
            for name, values in sorted(summary.metrics.get(head.name, {}).items()):
                if "mean_label" in values and "mean_prediction" in values:
                    count = examples_in(values) or 1
                    rows.append((name, values["mean_label"], values["mean_prediction"], count))
            if rows:
                uri = plots.predicted_vs_actual(rows, head.name)
                out.append((uri, f"{head.name}: predicted vs actual by slice"))
    return "".join(f"<p>{_e(n)}</p>" for n in notes), out


def _head(facts: RunFacts, head: OutputSpec) -> str:
    parts = [
        f'<section class="head" id="head-{_e(head.name)}">',
        f"<h2>{_e(head.name)} <small>{_e(head.type)}, column {_e(head.column)}</small></h2>",
        "<h3>Gates (eval split)</h3>",
        _guarded(_gates, facts, head),
    ]
    images = []
    for section in (_training, _slices, _head_plots):
        text, found = _guarded(section, facts, head, default=[])
        parts.append(text)
        images += [(uri, alt) for uri, alt in found if uri]
    parts.append('<div class="plots">' + "".join(_img(u, a) for u, a in images) + "</div>")
    parts.append("</section>")
    return "".join(parts)


def _data(facts: RunFacts) -> str:
    parts = ["<section id='data'><h2>Data</h2>"]
    if facts.rows:
        parts.append(_table(["split", "examples"], [[s, n] for s, n in facts.rows.items()]))
    missing = {}
    for split, columns in facts.missing.items():
        for column, fraction in columns.items():
            missing.setdefault(column, {})[split] = fraction
    if missing:
        splits = list(facts.missing)
        rows = [
            [column] + [f"{100 * by_split.get(s, 0.0):.1f}%" for s in splits]
            for column, by_split in sorted(missing.items(), key=lambda kv: -max(kv[1].values()))
        ]
        parts.append("<h3>Missing values per column</h3>" + _table(["column", *splits], rows))
    if facts.warnings:
        items = "".join(f"<li>{_e(w)}</li>" for w in facts.warnings)
        parts.append(f"<h3>Data gate warnings</h3><ul>{items}</ul>")
    anomalies = [(s, c, d) for s, found in facts.anomalies.items() for c, d in found]
    if anomalies:
        parts.append(
            "<h3>Anomalies (TFDV)</h3>" + _table(["split", "column", "anomaly"], anomalies)
        )
    parts.append("</section>")
    return "".join(parts)


def _drift(facts: RunFacts) -> str:
    """The data gate's drift per input against the published model's data (monitoring:)."""
    if not facts.drift_title:
        return ""
    # The terminal's cells, with what moved most before the verdict.
    rows = [[*f.cells()[:-1], f.moved, f.cells()[-1]] for f in facts.drift]
    header = [*Finding.CELLS[:-1], "moved most", Finding.CELLS[-1]]
    classes = ["fail" if f.over else "pass" for f in facts.drift]
    return (
        f"<section id='drift'><h2>Drift</h2><p>{_e(facts.drift_title)}</p>"
        + _table(header, rows, classes)
        + "</section>"
    )


def _model(facts: RunFacts) -> str:
    report = facts.training
    if not report:
        return ""
    rows = [
        ["device", f"{report.get('strategy', '?')} x{report.get('replicas', '?')}"],
        ["batch (global)", report.get("global_batch_size", "?")],
        ["epochs run", report.get("epochs_run", "?")],
        [
            "served from epoch",
            ", ".join(f"{h} {e}" for h, e in report.get("best_epochs", {}).items()),
        ],
        [
            "selection / loss balancing",
            f"{report.get('selection')} / {report.get('loss_balancing')}",
        ],
        ["weight averaging (momentum)", report.get("weight_averaging") or "off"],
    ]
    if tuned := tuned_values(report):
        rows.append(["tuned by TFX's Tuner", tuned])
    model = report.get("model", {})
    if model:
        rows.append(["parameters", f"{model['parameters']:,}"])
    if "seconds" in report:
        rows.append(["training time", f"{report['seconds']:.1f} s"])
    towers = model.get("towers", {})
    tower_table = ""
    if towers:
        tower_table = "<h3>Towers</h3>" + _table(
            ["input", "modality", "output width", "parameters"],
            [[n, t["modality"], t["width"], f"{t['parameters']:,}"] for n, t in towers.items()],
        )
    return (
        "<section id='model'><h2>Model</h2>"
        + _table(["", ""], rows)
        + tower_table
        + _rival(facts.rival_training)
        + "</section>"
    )


def _rival(report: dict | None) -> str:
    """What the boosted rival cost: seconds and trees per head."""
    if not report:
        return ""
    rows = [
        [head, f"{report['seconds_per_head'].get(head, 0):.1f} s", sum(trees), len(trees)]
        for head, trees in report["trees"].items()
    ]
    return (
        f"<h3>Boosted rival (gbdt): {report['seconds']:.1f} s on "
        f"{report['rows']['train']} training rows</h3>"
        + _table(["head", "training time", "trees", "models"], rows)
    )


CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#1f2328}
h1 small,h2 small{color:#59636e;font-weight:normal;font-size:.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #d0d7de;padding:3px 8px;
font-size:.9em;text-align:left}th{background:#f6f8fa}tr.fail td{background:#ffebe9}
tr.pass td:last-child{color:#1a7f37}tr.fail td:last-child{color:#d1242f;font-weight:bold}
.verdict{padding:.6em 1em;border-radius:6px;font-weight:bold}.yes{background:#dafbe1}
.no{background:#ffebe9}.plots img{max-width:48%;margin:4px;vertical-align:top}
section{border-top:1px solid #d0d7de;margin-top:1.5em}nav a{margin-right:1em}
"""


def render(facts: RunFacts) -> str:
    """The whole page."""
    spec = facts.spec
    if facts.blessed is None:
        verdict = "<p class='verdict no'>No evaluation: the run stopped before the Evaluator.</p>"
    elif facts.blessed:
        against = (
            f"the published model (version {facts.baseline_version})"
            if facts.baseline_version
            else "no published model (the first)"
        )
        verdict = (
            f"<p class='verdict yes'>Blessed: every head passed its gates, compared with "
            f"{_e(against)}. This model may replace the published one.</p>"
        )
    else:
        verdict = (
            "<p class='verdict no'>NOT blessed: at least one gate failed (below, in red). "
            "The published model stays.</p>"
        )
    headline = f"<p>{_e(facts.summary.headline(spec))}</p>" if facts.summary else ""
    nav = "".join(f"<a href='#head-{_e(h.name)}'>{_e(h.name)}</a>" for h in spec.outputs)
    nav += "<a href='#data'>data</a>" + ("<a href='#drift'>drift</a>" if facts.drift_title else "")
    nav += "<a href='#model'>model</a>"
    body = "".join(_head(facts, h) for h in spec.outputs)
    body += _guarded(_data, facts) + _guarded(_drift, facts) + _guarded(_model, facts)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(spec.name)}: run report</title><style>{CSS}</style></head><body>"
        f"<h1>{_e(spec.name)} <small>run {_e(facts.run)}, {_e(facts.created)}</small></h1>"
        f"{verdict}{headline}<nav>{nav}</nav>{body}</body></html>"
    )

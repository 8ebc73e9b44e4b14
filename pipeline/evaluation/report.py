"""Readable summaries of a run: its artifacts, the training report, the evaluation table, the
blessing decision, the push; and the registry's versions and model cards."""

from __future__ import annotations

import json
import os

from pipeline import constants
from pipeline.evaluation.summary import MIN_SLICE_EXAMPLES, EvaluationSummary, fmt, rivals
from pipeline.spec import Spec

# (component, output key, label) of the artifacts a run prints.
SHOWN_ARTIFACTS = [
    ("CsvExampleGen", "examples", "examples"),
    ("ImportExampleGen", "examples", "examples"),
    ("StatisticsGen", "statistics", "statistics"),
    ("SchemaGen", "schema", "schema"),
    ("ImportSchemaGen", "schema", "schema (user-curated)"),
    ("ExampleValidator", "anomalies", "anomalies"),
    ("Transform", "transformed_examples", "transformed examples"),
    ("Transform", "transform_graph", "transform graph"),
    ("Tuner", "best_hyperparameters", "the Tuner's best values"),
    ("Tuner", "tuner_results", "the Tuner's trials (values, score)"),
    ("Trainer", "model", "model (SavedModel)"),
    ("Trainer", "model_run", "training logs (TensorBoard)"),
]


def print_run(spec: Spec, outputs: dict, metadata_path: str) -> None:
    """Everything a finished run has to say: artifacts, training report, evaluation, push."""
    print("\nArtifacts of this run:")
    for component, key, label in SHOWN_ARTIFACTS:
        for artifact in outputs.get(component, {}).get(key, []):
            print(f"  {label:28s} {artifact.uri}")
    print(f"  {'ML Metadata':28s} {metadata_path}")
    for artifact in outputs.get("Trainer", {}).get("model_run", []):
        print_training_report(artifact.uri)
    evaluator = outputs.get("Evaluator", {})
    if not evaluator.get("evaluation"):
        return
    blessing = evaluator["blessing"][0]
    blessed = blessing.custom_properties[constants.BLESSED].int_value == 1
    rival_evaluations = outputs.get(constants.BOOSTED_EVALUATOR, {}).get("evaluation", [])
    rival = rivals(rival_evaluations[0].uri if rival_evaluations else None)
    if rival:
        beaten = outputs[constants.BOOSTED_EVALUATOR].get("blessing", [])
        if beaten and constants.BLESSED in beaten[0].custom_properties:
            blessed = blessed and beaten[0].custom_properties[constants.BLESSED].int_value == 1
    print_evaluation(
        spec, EvaluationSummary.from_tfma(evaluator["evaluation"][0].uri, rival), blessed
    )
    for artifact in outputs.get(constants.BOOSTED_TRAINER, {}).get("model_run", []):
        print_boosted_report(artifact.uri)
    print_push(outputs.get("RegistryPusher", {}).get("pushed_model", []))
    for artifact in outputs.get("RunReport", {}).get("report", []):
        print(f"Report: {os.path.join(artifact.uri, constants.REPORT_FILE)}")


def print_push(pushed: list) -> None:
    props = pushed[0].custom_properties if pushed else {}
    if props and props[constants.PUSHED].int_value == 1:
        print(
            f"Pushed version {props[constants.PUSHED_VERSION].int_value}: "
            f"{props[constants.PUSHED_DESTINATION].string_value}"
        )
        if constants.MLFLOW_VERSION in props:
            print(f"Registered in MLflow as version {props[constants.MLFLOW_VERSION].string_value}")
    elif props and constants.PUSHED_VERSION in props:
        print(
            f"Nothing pushed: this model is already version "
            f"{props[constants.PUSHED_VERSION].int_value}"
            f" ({props[constants.PUSHED_DESTINATION].string_value})."
        )
    else:
        print("Nothing pushed: the registry is as it was.")


def load_training_report(model_run_uri: str) -> dict | None:
    path = os.path.join(model_run_uri, constants.TRAINING_REPORT_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def print_boosted_report(model_run_uri: str) -> None:
    """What the rival cost: the boosted trees' training time and size (trainer/gbdt.py)."""
    report = load_training_report(model_run_uri)
    if report is None:
        return
    trees = ", ".join(
        f"{head} {sum(t)}" + (f" in {len(t)} models" if len(t) > 1 else "")
        for head, t in report["trees"].items()
    )
    print(
        f"\nThe rival, gradient-boosted trees per head (BoostedTrainer): trained in "
        f"{report['seconds']:.1f} s on {report['rows']['train']} rows; trees: {trees}"
    )


def tuned_values(report: dict) -> str:
    """The values TFX's Tuner chose (the training report's `hyperparameters`), '' without one."""
    return ", ".join(f"{k} {v}" for k, v in (report.get("hyperparameters") or {}).items())


def print_training_report(model_run_uri: str) -> None:
    """Per-head validation metrics next to what a trivial predictor scores."""
    report = load_training_report(model_run_uri)
    if report is None:
        return
    epochs = sorted(set(report["best_epochs"].values()), key=str)
    chosen = (
        str(epochs[0])
        if len(epochs) == 1
        else ", ".join(f"{h} {e}" for h, e in report["best_epochs"].items())
    )
    print(
        f"\nValidation metrics ({report['examples']} validation examples; {report['epochs_run']} "
        f"epochs, served from epoch {chosen} ({report['selection']} selection, "
        f"{report['loss_balancing']} loss balancing); {report['strategy']} x"
        f"{report['replicas']}, batch {report['global_batch_size']}):"
    )
    labelled = ", ".join(
        f"{head} {h['train_examples']}/{h['examples']}"
        for head, h in report["heads"].items()
        if "train_examples" in h
    )
    if labelled:
        print(f"  rows with the head's label (train/validation): {labelled}")
    if tuned := tuned_values(report):
        print(f"  tuned (TFX's Tuner, the best trial on validation): {tuned}")
    for head, c in report.get("calibration", {}).items():
        print(
            f"  {head} calibrated: temperature {c['temperature']:g}; log loss "
            f"{c['log_loss_before']:.4f} -> {c['log_loss_after']:.4f}, ECE {c['ece_before']:.4f} "
            f"-> {c['ece_after']:.4f}"
        )
    print(f"  {'head':12s} {'metric':16s} {'model':>10s} {'trivial':>10s}  better?")
    for head, h in report["heads"].items():
        for metric, value, base, better in versus_trivial(h):
            if base is None:
                print(f"  {head:12s} {metric:16s} {value:10.4f} {'':>10s}")
                continue
            print(
                f"  {head:12s} {metric:16s} {value:10.4f} {base:10.4f}  "
                f"{'yes' if better else 'NO'}"
            )


def versus_trivial(head_report: dict) -> list[tuple]:
    """[(metric, the model's value, the trivial predictor's (None: none), better than it
    (None: nothing to compare))] of one head in the training report."""
    rows = []
    for metric, value in head_report["metrics"].items():
        base = head_report["baseline"].get(metric)
        better = None
        if base is not None:
            higher = head_report["higher_is_better"].get(metric, metric != "loss")
            better = value > base if higher else value < base
        rows.append((metric, value, base, better))
    return rows


def print_evaluation(spec: Spec, summary: EvaluationSummary, blessed: bool) -> None:
    print("\nEvaluation (eval split; gates from the spec):")
    rival_names = summary.rival_names()
    rival_header = "".join(f" {r:>9s}" for r in rival_names)
    print(
        f"  {'head':10s} {'metric':15s} {'value':>9s} {'baseline':>9s}{rival_header}  "
        f"{'threshold':44s} result"
    )
    rows = summary.gate_rows(spec)
    for r in rows:
        rival_values = "".join(f" {fmt(r.rivals.get(name)):>9s}" for name in rival_names)
        print(
            f"  {r.head:10s} {r.metric:15s} {fmt(r.value):>9s} "
            f"{fmt(r.baseline):>9s}{rival_values}  {r.threshold:44s} "
            f"{'pass' if r.passed else 'FAIL'}"
        )
    from preprocessing.heads.base import uncalibrated_name  # TensorFlow: not at import

    for head in spec.outputs:
        before = summary.value(uncalibrated_name(head.name), "calibration")
        after = summary.value(head.name, "calibration")
        if before is not None and after is not None:
            print(
                f"  {head.name} calibration (TFMA: mean prediction / mean label, 1 is calibrated): "
                f"{before:.3f} before its temperature, {after:.3f} after"
            )
    weakest = summary.weakest_slices(spec)
    if weakest:
        print(f"\nWeakest slices (at least {MIN_SLICE_EXAMPLES} examples):")
        for w in weakest:
            print(
                f"  {w.head:10s} {w.metric:15s} {w.slice:28s} {w.value:.4f} "
                f"(overall {fmt(w.overall)}, {w.examples} examples)"
            )
    if blessed:
        print("\nBlessed: every head passed its gates.")
    else:
        print("\nNOT blessed; failing:")
        for r in rows:
            if not r.passed:
                print(f"  - {r.head} {r.metric} = {fmt(r.value)}: {r.why}")


def headline(card: dict) -> str:
    """A registry version's headline: each head's first gated metric, overall."""
    spec = Spec.from_dict(card["spec"])
    return EvaluationSummary.from_dict(card.get("evaluation", {})).headline(spec)


def print_models(registry, name: str) -> None:
    versions = registry.versions(name)
    if not versions:
        print(f"{name}: no version in {registry.root}")
        return
    print(f"{name} in {registry.root} (TF Serving serves the highest: {versions[-1]})")
    print(f"  {'ver':>3s}  {'published':20s}  {'vs':>3s}  headline metrics (eval split)")
    for v in versions:
        card = registry.card(name, v)
        extra = f"  (rollback of {card['rollback_of']})" if card.get("rollback_of") else ""
        baseline = card.get("baseline", {}).get("version")
        print(
            f"  {v:3d}  {card.get('published_at', '?'):20s}  {baseline or '-':>3}  "
            f"{headline(card)}{extra}"
        )


def print_card(registry, name: str, version: int) -> None:
    card = registry.card(name, version)
    card = {k: v for k, v in card.items() if k != "spec"}
    print(json.dumps(card, indent=2, sort_keys=True))
    print(f"\n(files: {os.path.join(registry.path(name, version))})")

"""Readable summaries of a run: the evaluation table, the blessing decision, the push."""

from __future__ import annotations

import json
import os

from pipeline.eval_config import higher_is_better, metric_name
from pipeline.spec import Spec

MIN_SLICE_EXAMPLES = 10


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def gate_rows(spec: Spec, summary: dict) -> list[dict]:
    """One row per gate: head, metric, value, threshold, baseline value, pass/fail."""
    failures = summary["validation"]["failures"]
    rows = []
    for head in spec.outputs:
        overall = summary["metrics"].get(head.name, {}).get("overall", {})
        for gate in head.gates:
            name = metric_name(head, gate.metric)
            if head.type == "multilabel":
                name = f"{name}/macro"
            value = overall.get(name)
            baseline = overall.get(f"baseline:{name}")
            bounds = []
            if gate.min is not None:
                bounds.append(f">= {gate.min}")
            if gate.max is not None:
                bounds.append(f"<= {gate.max}")
            if gate.max_regression is not None:
                bounds.append(
                    f"worse than baseline by <= {gate.max_regression}"
                    if baseline is not None
                    else "(no baseline yet)"
                )
            failed = [
                f
                for f in failures
                if f["head"] == head.name and f["metric"] == metric_name(head, gate.metric)
            ]
            rows.append(
                {
                    "head": head.name,
                    "metric": gate.metric,
                    "value": value,
                    "threshold": ", ".join(bounds),
                    "baseline": baseline,
                    "passed": not failed,
                    "why": "; ".join(f["message"] for f in failed),
                }
            )
    return rows


def weakest_slices(spec: Spec, summary: dict) -> list[tuple]:
    """(head, metric, slice, value, overall) for the worst slice of each head's first metric."""
    out = []
    for head in spec.outputs:
        slices = summary["metrics"].get(head.name, {})
        metric = head.gates[0].metric if head.gates else head.metrics[0]
        name = metric_name(head, metric) + ("/macro" if head.type == "multilabel" else "")
        candidates = []
        for slice_name, values in slices.items():
            if slice_name == "overall" or name not in values:
                continue
            count = values.get("example_count", MIN_SLICE_EXAMPLES)
            if "auc" in metric and values[name] in (0.0, 1.0):
                continue  # one class only in this slice: its AUC says nothing
            if count >= MIN_SLICE_EXAMPLES:
                candidates.append((values[name], slice_name, count))
        if candidates:
            worst = (min if higher_is_better(head, metric) else max)(candidates)
            overall = slices.get("overall", {}).get(name)
            out.append((head.name, metric, worst[1], worst[0], overall, int(worst[2])))
    return out


def print_evaluation(spec: Spec, summary: dict, blessed: bool) -> None:
    print("\nEvaluation (eval split; gates from the spec):")
    print(
        f"  {'head':10s} {'metric':15s} {'value':>9s} {'baseline':>9s}  "
        f"{'threshold':44s} result"
    )
    for r in gate_rows(spec, summary):
        print(
            f"  {r['head']:10s} {r['metric']:15s} {_fmt(r['value']):>9s} "
            f"{_fmt(r['baseline']):>9s}  {r['threshold']:44s} "
            f"{'pass' if r['passed'] else 'FAIL'}"
        )
    weakest = weakest_slices(spec, summary)
    if weakest:
        print(f"\nWeakest slices (at least {MIN_SLICE_EXAMPLES} examples):")
        for head, metric, slice_name, value, overall, count in weakest:
            print(
                f"  {head:10s} {metric:15s} {slice_name:28s} {value:.4f} "
                f"(overall {_fmt(overall)}, {count} examples)"
            )
    if blessed:
        print("\nBlessed: every head passed its gates.")
    else:
        print("\nNOT blessed; failing:")
        for r in gate_rows(spec, summary):
            if not r["passed"]:
                print(f"  - {r['head']} {r['metric']} = {_fmt(r['value'])}: {r['why']}")


def headline(card: dict) -> str:
    """Each head's first gated metric (else its first metric), overall."""
    spec = Spec.from_dict(card["spec"])
    parts = []
    for head in spec.outputs:
        metric = head.gates[0].metric if head.gates else head.metrics[0]
        name = metric_name(head, metric) + ("/macro" if head.type == "multilabel" else "")
        value = (
            card.get("evaluation", {})
            .get("metrics", {})
            .get(head.name, {})
            .get("overall", {})
            .get(name)
        )
        parts.append(f"{head.name} {metric}={_fmt(value)}")
    return "; ".join(parts)


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

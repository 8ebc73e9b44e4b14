"""Bench part 5 (issue 19): is every head of the multi-output model at least as good as its own
single-head model and as a per-head gradient-boosted model? `trainer/compare.py` (what `mimo
compare` runs) on the bundled data sets, 3 seeds. Their data and heads are the bundled specs';
their `model:` and `training:` sections are dropped, so the product's defaults are measured.
"""

from __future__ import annotations

import os

import numpy as np
import yaml

SEEDS = (1, 2, 3)
# Per-head selection, loss balancing and weight averaging (issue 19, items 3-4): each (selection,
# balancing, weight averaging) the multi-output model is fitted with besides the product's default,
# which `compare` measures. DWA and FAMO were measured without weight averaging (results.json,
# quality_per_head) and left out here: neither beat static weights by a standard deviation.
MECHANISMS = (
    ("joint", "static", True),
    ("per_head", "static", False),  # the default before weight averaging
    ("per_head", "uncertainty", True),
)


def mechanism_name(selection: str, balancing: str, averaging: bool) -> str:
    return f"{selection}+{balancing}" + ("" if averaging else ", no averaging")


def default_mechanism() -> tuple:
    """The product's (selection, balancing, weight averaging): what `compare` fits."""
    from pipeline.spec import TRAINING_DEFAULTS

    return tuple(TRAINING_DEFAULTS[k] for k in ("selection", "loss_balancing", "weight_averaging"))


def default_settings_spec(path: str, out_dir: str) -> str:
    """A copy of the spec at `path` without its `model:` and `training:` sections, its data path
    made absolute; returns the copy's path."""
    with open(path) as f:
        raw = yaml.safe_load(f)
    raw.pop("model", None)
    raw.pop("training", None)
    raw["data"]["path"] = os.path.join(os.path.dirname(os.path.abspath(path)), raw["data"]["path"])
    os.makedirs(out_dir, exist_ok=True)
    copy = os.path.join(out_dir, os.path.basename(path))
    with open(copy, "w") as f:
        yaml.safe_dump(raw, f, sort_keys=False)
    return copy


def mean_sd(stat: dict) -> str:
    return f"{stat['mean']} ± {stat['sd']}"


def summary_lines(results: dict) -> list[str]:
    """The quality table for summary.md: one row per data set and head."""
    lines = [
        "",
        "## Models that win (issue 19): every head vs its single-head model and boosted trees",
        "",
        "Each model fits on train, stops early on validation, and is scored on eval (which chose "
        "nothing); the specs' `model:`/`training:` sections dropped (product defaults). Mean ± sd "
        "over seeds; 'matches' = at most one pooled sd behind.",
        "",
        "| data | head | metric | multi-output | single-head | boosted trees | "
        "multi vs single | multi vs boosted |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, r in results.items():
        for head, h in r["heads"].items():

            def verdict(rival, h=h):
                v = h[f"vs_{rival}"]
                return f"{v['gap']:+.4f} ({'matches' if v['matches'] else 'loses'})"

            lines.append(
                f"| {label} | {head} | {h['metric']} ({h['better']}) | {mean_sd(h['multi'])} | "
                f"{mean_sd(h['single'])} | {mean_sd(h['boosted'])} | {verdict('single')} | "
                f"{verdict('boosted')} |"
            )
        s = r["seconds"]
        lines.append(
            f"| {label} | (time, s) | | {s['multi']} | {s['single']} (sum) | {s['boosted']} | "
            f"{r['time_multi_over_sum_single']:.2f}x | goal met: {'yes' if r['met'] else 'no'} |"
        )
    return lines


def per_head_epochs_lines(results: dict) -> list[str]:
    """The "where each head peaks" table of results measured before per-head selection (one fit
    of 10 epochs without early stopping, eval after every epoch; code at 55ea7bf, removed
    since): the finding that led to per-head selection, kept with its figures."""
    lines = [
        "",
        "### Where each head peaks (one multi-output fit, no early stopping, eval after every "
        "epoch)",
        "",
        "| data | head | metric | at the best summed validation loss (today) | at its own best "
        "validation loss (epochs) | at its own best validation metric (epochs) |",
        "|---|---|---|---|---|---|",
    ]
    for label, r in results.items():
        for head, h in r["heads"].items():
            lines.append(
                f"| {label} | {head} | {h['metric']} | {mean_sd(h['at_total_loss'])} | "
                f"{mean_sd(h['at_own_loss'])} ({h['own_loss_epochs']}) | {mean_sd(h['at_own_metric'])} "
                f"({h['own_metric_epochs']}) |"
            )
    return lines


def mechanisms(splits, seeds=SEEDS, log=print) -> dict:
    """The multi-output model under each (selection, balancing, averaging) of MECHANISMS but the
    default: per head its eval primary metric (mean, sd), training seconds and epochs; fitted,
    stopped and scored as `compare` fits its multi-output model (trainer.compare.fit_network)."""
    from pipeline.spec import Spec
    from trainer.compare import fit_network, primary_metric
    from trainer.compare import mean_sd as stats
    from trainer.data import collect_labels

    default = default_mechanism()
    feature_spec = splits.tft_output.transformed_feature_spec()
    labels = collect_labels(splits.files["train"], splits.spec, feature_spec)
    out = {}
    for selection, balancing, averaging in MECHANISMS:
        if (selection, balancing, averaging) == default:
            continue
        raw = splits.spec.to_dict()
        raw["training"].update(
            selection=selection, loss_balancing=balancing, weight_averaging=averaging
        )
        spec = Spec.from_dict(raw)
        values, seconds, epochs = {h.name: [] for h in spec.outputs}, [], []
        for seed in seeds:
            log(f"mechanism {mechanism_name(selection, balancing, averaging)}: seed {seed}")
            metrics, t, e = fit_network(spec, splits, seed, labels)
            for h in spec.outputs:
                values[h.name].append(metrics[h.name][primary_metric(h)[0]])
            seconds.append(t)
            epochs.append(e)
        out[mechanism_name(selection, balancing, averaging)] = {
            "heads": {h: stats(v) for h, v in values.items()},
            "seconds": round(float(np.mean(seconds)), 1),
            "epochs": epochs,
        }
    return out


def mechanisms_lines(results: dict) -> list[str]:
    """Per data set and head: the multi-output model under each mechanism, the default (from
    the comparison) marked, next to the single-head and boosted models."""
    default = mechanism_name(*default_mechanism())
    if not any("mechanisms" in r for r in results.values()):
        return []
    lines = [
        "",
        "### Per-head selection, loss balancing, weight averaging (the multi-output model only; "
        "selection + balancing; * = the default, from the table above)",
        "",
    ]
    for label, r in results.items():
        if "mechanisms" not in r:
            continue
        runs = dict(r["mechanisms"])
        runs[default + " *"] = {
            "heads": {h: v["multi"] for h, v in r["heads"].items()},
            "seconds": r["seconds"]["multi"],
        }
        heads = list(r["heads"])
        lines += [
            f"| {label} | "
            + " | ".join(f"{h} {r['heads'][h]['metric']}" for h in heads)
            + " | training s |",
            "|---|" + "---|" * (len(heads) + 1),
        ]
        for name, m in sorted(runs.items()):
            cells = " | ".join(mean_sd(m["heads"][h]) for h in heads)
            lines.append(f"| {name} | {cells} | {m['seconds']} |")
        cells = " | ".join(mean_sd(r["heads"][h]["single"]) for h in heads)
        lines.append(f"| single-head models | {cells} | {r['seconds']['single']} (sum) |")
        cells = " | ".join(mean_sd(r["heads"][h]["boosted"]) for h in heads)
        lines.append(f"| boosted trees | {cells} | {r['seconds']['boosted']} |")
        lines.append("")
    return lines

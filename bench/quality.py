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
# Per-head model selection and loss balancing (issue 19, item 4): each (selection, balancing)
# the multi-output model is fitted with besides the product's default, which `compare` measures.
MECHANISMS = (
    ("joint", "static"),
    ("per_head", "static"),
    ("per_head", "uncertainty"),
    ("per_head", "dwa"),
    ("per_head", "famo"),
)


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


def per_head_epochs(splits, seeds=SEEDS, epochs: int = 10, log=print) -> dict:
    """Where each head peaks: one multi-output fit of `epochs` epochs without early stopping,
    scored on eval after every epoch. Per head, its eval metric at the epoch today's rule keeps
    (the best summed validation loss), at its own best validation loss, and at its own best
    validation primary metric: what selecting each head's epoch on its own could gain."""
    import tf_keras as keras

    from trainer.compare import mean_sd as stats
    from trainer.compare import primary_metric
    from trainer.data import collect_labels, make_dataset
    from trainer.model import FeatureInfo, build_model, compile_model
    from trainer.train import evaluate_with_baselines

    spec = splits.spec
    labels = collect_labels(
        splits.files["train"], spec, splits.tft_output.transformed_feature_spec()
    )
    info = FeatureInfo.from_transform_output(splits.tft_output, labels, spec)
    batch = spec.training["batch_size"]
    train = make_dataset(
        splits.files["train"], spec, info, batch, shuffle=True, seed=42, cache=True
    )
    valid = make_dataset(splits.files["validation"], spec, info, batch, cache=True)
    runs = []
    for seed in seeds:
        log(f"per-head epochs: seed {seed}")
        keras.utils.set_random_seed(seed)
        model = compile_model(build_model(spec, info), spec, info)
        history, scores = [], []
        for _ in range(epochs):
            fit = model.fit(train, validation_data=valid, epochs=1, verbose=0)
            history.append({k: v[0] for k, v in fit.history.items() if k.startswith("val_")})
            report = evaluate_with_baselines(model, spec, info, labels, splits.files["eval"], batch)
            scores.append(report["heads"])
        total = int(np.argmin([h["val_loss"] for h in history]))
        run = {"seed": seed, "total_best_epoch": total + 1, "heads": {}}
        for head in spec.outputs:
            metric, better = primary_metric(head)
            sign = 1 if better == "higher" else -1
            prefix = f"val_{head.name}_" if len(spec.outputs) > 1 else "val_"
            by_loss = int(np.argmin([h[f"{prefix}loss"] for h in history]))
            by_metric = int(np.argmax([sign * h[f"{prefix}{metric}"] for h in history]))
            curve = [s[head.name]["metrics"][metric] for s in scores]
            run["heads"][head.name] = {
                "metric": metric,
                "at_total_loss": curve[total],
                "own_loss_epoch": by_loss + 1,
                "at_own_loss": curve[by_loss],
                "own_metric_epoch": by_metric + 1,
                "at_own_metric": curve[by_metric],
                "eval_curve": [round(v, 4) for v in curve],
            }
        runs.append(run)
    heads = {}
    for head in spec.outputs:
        rows = [r["heads"][head.name] for r in runs]
        heads[head.name] = {"metric": rows[0]["metric"]}
        for key in ("at_total_loss", "at_own_loss", "at_own_metric"):
            heads[head.name][key] = stats([r[key] for r in rows])
        heads[head.name]["own_metric_epochs"] = [r["own_metric_epoch"] for r in rows]
        heads[head.name]["own_loss_epochs"] = [r["own_loss_epoch"] for r in rows]
    return {"seeds": list(seeds), "epochs": epochs, "heads": heads, "runs": runs}


def per_head_epochs_lines(results: dict) -> list[str]:
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
    """The multi-output model under each (selection, balancing) of MECHANISMS but the default:
    per head its eval primary metric (mean, sd), training seconds and epochs; fitted, stopped
    and scored as `compare` fits its multi-output model (trainer.compare.fit_network)."""
    from pipeline.spec import TRAINING_DEFAULTS, Spec
    from trainer.compare import fit_network, primary_metric
    from trainer.compare import mean_sd as stats
    from trainer.data import collect_labels

    default = (TRAINING_DEFAULTS["selection"], TRAINING_DEFAULTS["loss_balancing"])
    feature_spec = splits.tft_output.transformed_feature_spec()
    labels = collect_labels(splits.files["train"], splits.spec, feature_spec)
    out = {}
    for selection, balancing in MECHANISMS:
        if (selection, balancing) == default:
            continue
        raw = splits.spec.to_dict()
        raw["training"].update(selection=selection, loss_balancing=balancing)
        spec = Spec.from_dict(raw)
        values, seconds, epochs = {h.name: [] for h in spec.outputs}, [], []
        for seed in seeds:
            log(f"mechanism {selection} + {balancing}: seed {seed}")
            metrics, t, e = fit_network(spec, splits, seed, labels)
            for h in spec.outputs:
                values[h.name].append(metrics[h.name][primary_metric(h)[0]])
            seconds.append(t)
            epochs.append(e)
        out[f"{selection}+{balancing}"] = {
            "heads": {h: stats(v) for h, v in values.items()},
            "seconds": round(float(np.mean(seconds)), 1),
            "epochs": epochs,
        }
    return out


def mechanisms_lines(results: dict) -> list[str]:
    """Per data set and head: the multi-output model under each mechanism, the default (from
    the comparison) marked, next to the single-head and boosted models."""
    from pipeline.spec import TRAINING_DEFAULTS

    default = f"{TRAINING_DEFAULTS['selection']}+{TRAINING_DEFAULTS['loss_balancing']}"
    if not any("mechanisms" in r for r in results.values()):
        return []
    lines = [
        "",
        "### Per-head selection and loss balancing (the multi-output model only; selection + "
        "balancing; * = the default, from the table above)",
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

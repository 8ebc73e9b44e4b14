"""Bench part 9 (issue 19): is every head of the multi-output model at least as good as its own
single-head model and as a per-head gradient-boosted model?

On the pipeline's own Transform output of each data set: every model fits on the train split,
stops early (and selects its epoch or its number of trees) on the validation split, and is scored
on the eval split, which played no part in either. The specs' data and heads are the bundled ones;
their `model:` and `training:` sections are dropped, so the product's defaults are what is
measured. Mean and sd over seeds; a head "matches" a rival when it is at most one pooled sd
behind it.
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
import yaml

SEEDS = (1, 2, 3)


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


@dataclasses.dataclass
class Splits:
    spec: object
    tft_output: object
    files: dict  # split -> file pattern of transformed examples


def transformed_splits(metadata_path: str, spec) -> Splits:
    import tensorflow_transform as tft

    from pipeline.runners.local import latest_run_outputs

    outputs = latest_run_outputs(metadata_path)
    graph = outputs["Transform"]["transform_graph"][0].uri
    examples = outputs["Transform"]["transformed_examples"][0].uri
    files = {s: os.path.join(examples, f"Split-{s}", "*") for s in ("train", "validation", "eval")}
    return Splits(spec, tft.TFTransformOutput(graph), files)


def primary_metric(head) -> tuple[str, str]:
    """(metric, "higher" | "lower"): the head type's one number for how good a head is."""
    metric = head.head_type.primary
    return metric, "higher" if head.head_type.higher_is_better(metric) else "lower"


def _fit_network(spec, splits: Splits, train_labels, seed: int) -> tuple[dict, float, int]:
    """({head: {metric: value}} on eval, training seconds, epochs run)."""
    import tf_keras as keras

    from trainer.train import evaluate_with_baselines, train

    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    result = train(spec, splits.tft_output, splits.files["train"], splits.files["validation"])
    seconds = time.perf_counter() - start
    report = evaluate_with_baselines(
        result.model,
        spec,
        result.info,
        train_labels,
        splits.files["eval"],
        spec.training["batch_size"],
    )
    metrics = {h: v["metrics"] for h, v in report["heads"].items()}
    return metrics, seconds, result.report["epochs_run"]


def measure(name: str, splits: Splits, seeds=SEEDS, log=print) -> dict:
    """Per head: multi-output, single-head and boosted primary metric on eval (mean, sd), and the
    training times."""
    from trainer.data import collect_labels, read_transformed
    from trainer.gbdt import fit_boosted, score
    from trainer.model import FeatureInfo
    from trainer.train import train

    spec, tft_output = splits.spec, splits.tft_output
    feature_spec = tft_output.transformed_feature_spec()
    train_labels = collect_labels(splits.files["train"], spec, feature_spec)
    info = FeatureInfo.from_transform_output(tft_output, train_labels, spec)
    arrays = {s: read_transformed(f, feature_spec) for s, f in splits.files.items()}
    rows = {s: len(next(iter(a.values()))) for s, a in arrays.items()}
    # Untimed: warms TensorFlow, so the first timed fit pays no one-off cost.
    train(spec, tft_output, splits.files["train"], splits.files["validation"], train_steps=20)

    runs = {"multi": [], "single": [], "boosted": []}
    seconds = {"multi": [], "single": [], "boosted": []}
    epochs = {"multi": [], "single": []}
    for seed in seeds:
        log(f"quality {name}: seed {seed}, multi-output")
        metrics, t, e = _fit_network(spec, splits, train_labels, seed)
        runs["multi"].append(metrics)
        seconds["multi"].append(t)
        epochs["multi"].append(e)
        single, total, single_epochs = {}, 0.0, {}
        for head in spec.outputs:
            log(f"quality {name}: seed {seed}, single-head {head.name}")
            alone = dataclasses.replace(spec, outputs=(head,))
            metrics, t, e = _fit_network(alone, splits, train_labels, seed)
            single[head.name] = metrics[head.name]
            single_epochs[head.name] = e
            total += t
        runs["single"].append(single)
        seconds["single"].append(total)
        epochs["single"].append(single_epochs)
        log(f"quality {name}: seed {seed}, boosted trees per head")
        start = time.perf_counter()
        boosted = fit_boosted(spec, arrays["train"], arrays["validation"], seed=seed)
        seconds["boosted"].append(time.perf_counter() - start)
        runs["boosted"].append(
            score(spec, info, boosted.predict(arrays["eval"], info), arrays["eval"])
        )

    heads = {}
    for head in spec.outputs:
        metric, better = primary_metric(head)
        sign = 1 if better == "higher" else -1
        values = {k: np.array([r[head.name][metric] for r in v]) for k, v in runs.items()}
        row = {"metric": metric, "better": better}
        for kind, v in values.items():
            row[kind] = {"mean": round(float(v.mean()), 4), "sd": round(float(v.std(ddof=1)), 4)}
        for rival in ("single", "boosted"):
            pooled = float(np.sqrt((values["multi"].var(ddof=1) + values[rival].var(ddof=1)) / 2))
            gap = sign * (values["multi"].mean() - values[rival].mean())  # > 0: multi is better
            row[f"vs_{rival}"] = {
                "gap": round(float(gap), 4),
                "pooled_sd": round(pooled, 4),
                "matches": bool(gap >= -pooled),
            }
        heads[head.name] = row
    ratio = float(np.mean(seconds["multi"]) / np.mean(seconds["single"]))
    return {
        "seeds": list(seeds),
        "rows": rows,
        "heads": heads,
        "seconds": {k: round(float(np.mean(v)), 1) for k, v in seconds.items()},
        "epochs": {"multi": epochs["multi"], "single": epochs["single"]},
        "time_multi_over_sum_single": round(ratio, 3),
        "met": ratio <= 0.5
        and all(h["vs_single"]["matches"] and h["vs_boosted"]["matches"] for h in heads.values()),
    }


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

            def cell(kind, h=h):
                return f"{h[kind]['mean']} ± {h[kind]['sd']}"

            def verdict(rival, h=h):
                v = h[f"vs_{rival}"]
                return f"{v['gap']:+.4f} ({'matches' if v['matches'] else 'loses'})"

            lines.append(
                f"| {label} | {head} | {h['metric']} ({h['better']}) | {cell('multi')} | "
                f"{cell('single')} | {cell('boosted')} | {verdict('single')} | "
                f"{verdict('boosted')} |"
            )
        s = r["seconds"]
        lines.append(
            f"| {label} | (time, s) | | {s['multi']} | {s['single']} (sum) | {s['boosted']} | "
            f"{r['time_multi_over_sum_single']:.2f}x | goal met: {'yes' if r['met'] else 'no'} |"
        )
    return lines

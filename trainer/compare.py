"""`mimo compare`: is every head of the multi-output model at least as good as its own single-head
model and as a per-head gradient-boosted model, on the user's own data?

On a run's Transform output: every model fits on the train split, stops early (selecting its
epoch, or its number of trees) on the validation split, and is scored on the eval split, which
played no part in either. Mean and sd over seeds; a head "matches" a rival when it is at most one
pooled sd behind it (with one seed: when it is not behind).
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from pipeline.spec import SPLITS


@dataclasses.dataclass
class Splits:
    spec: object  # pipeline.spec.Spec
    tft_output: object  # tft.TFTransformOutput
    files: dict  # split -> file pattern of transformed examples


def transformed_splits(outputs: dict, spec) -> Splits:
    """The Transform output of a run's `outputs` ({component: {key: [artifact]}})."""
    import tensorflow_transform as tft

    graph = outputs["Transform"]["transform_graph"][0].uri
    examples = outputs["Transform"]["transformed_examples"][0].uri
    files = {s: os.path.join(examples, f"Split-{s}", "*") for s in SPLITS}
    return Splits(spec, tft.TFTransformOutput(graph), files)


def primary_metric(head) -> tuple[str, str]:
    """(metric, "higher" | "lower"): the head type's one number for how good a head is."""
    metric = head.head_type.primary
    return metric, "higher" if head.head_type.higher_is_better(metric) else "lower"


def mean_sd(values) -> dict:
    """{"mean", "sd"} of a metric over seeds, rounded (sd 0 for one seed)."""
    v = np.asarray(values, dtype=float)
    sd = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return {"mean": round(float(v.mean()), 4), "sd": round(sd, 4)}


def fit_and_score(
    spec, tft_output, train_files, validation_files, eval_files, seed: int, train_labels=None
) -> tuple[dict, float, int]:
    """The spec's model fitted on `train_files` with `seed`, stopping on `validation_files`, then
    scored on `eval_files`: (evaluate_with_baselines' report, training seconds, epochs run).
    `train_labels`: collect_labels of `train_files`, when the caller has them already."""
    import tf_keras as keras

    from trainer.data import collect_labels
    from trainer.train import evaluate_with_baselines, train

    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    result = train(spec, tft_output, train_files, validation_files)
    seconds = time.perf_counter() - start
    if train_labels is None:
        train_labels = collect_labels(train_files, spec, result.info.feature_spec)
    report = evaluate_with_baselines(
        result.model, spec, result.info, train_labels, eval_files, spec.training["batch_size"]
    )
    return report, seconds, result.report["epochs_run"]


def fit_network(spec, splits: Splits, seed: int, train_labels=None) -> tuple[dict, float, int]:
    """`spec`'s network fitted on `splits` (fit_and_score): ({head: {metric: value}} on eval,
    training seconds, epochs run)."""
    files = splits.files
    report, seconds, epochs = fit_and_score(
        spec,
        splits.tft_output,
        files["train"],
        files["validation"],
        files["eval"],
        seed,
        train_labels,
    )
    return {h: v["metrics"] for h, v in report["heads"].items()}, seconds, epochs


def compare(splits: Splits, seeds=(1,), log=print) -> dict:
    """Per head: the multi-output, single-head and boosted models' primary metric on eval (mean,
    sd), the gaps, and the training times (the networks' after an untimed warm-up fit)."""
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
        log(f"seed {seed}: the multi-output model")
        metrics, t, e = fit_network(spec, splits, seed, train_labels)
        runs["multi"].append(metrics)
        seconds["multi"].append(t)
        epochs["multi"].append(e)
        single, total, single_epochs = {}, 0.0, {}
        for head in spec.outputs:
            log(f"seed {seed}: a single-head model for {head.name}")
            alone = dataclasses.replace(spec, outputs=(head,))
            metrics, t, e = fit_network(alone, splits, seed, train_labels)
            single[head.name] = metrics[head.name]
            single_epochs[head.name] = e
            total += t
        runs["single"].append(single)
        seconds["single"].append(total)
        epochs["single"].append(single_epochs)
        log(f"seed {seed}: boosted trees per head")
        start = time.perf_counter()
        boosted = fit_boosted(spec, arrays["train"], arrays["validation"], seed=seed)
        seconds["boosted"].append(time.perf_counter() - start)
        predictions = boosted.predict(arrays["eval"], info)
        runs["boosted"].append(score(spec, info, predictions, arrays["eval"]))

    heads = {}
    for head in spec.outputs:
        metric, better = primary_metric(head)
        sign = 1 if better == "higher" else -1
        values = {k: np.array([r[head.name][metric] for r in v]) for k, v in runs.items()}
        row = {"metric": metric, "better": better}
        row.update({kind: mean_sd(v) for kind, v in values.items()})
        for rival in ("single", "boosted"):
            pooled = float(np.sqrt((row["multi"]["sd"] ** 2 + row[rival]["sd"] ** 2) / 2))
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


def format_table(result: dict) -> str:
    """One row per head, then the training times."""

    def cell(h, kind):
        v = h[kind]
        return f"{v['mean']:.4f}" + (f" ± {v['sd']:.4f}" if len(result["seeds"]) > 1 else "")

    def verdict(h, rival):
        v = h[f"vs_{rival}"]
        return f"{v['gap']:+.4f} {'ok' if v['matches'] else 'BEHIND'}"

    rows = [
        (
            "head",
            "metric",
            "multi-output",
            "single-head",
            "boosted trees",
            "vs single",
            "vs boosted",
        )
    ]
    for name, h in result["heads"].items():
        rows.append(
            (
                name,
                f"{h['metric']} ({h['better']})",
                cell(h, "multi"),
                cell(h, "single"),
                cell(h, "boosted"),
                verdict(h, "single"),
                verdict(h, "boosted"),
            )
        )
    s = result["seconds"]
    rows.append(
        (
            "(seconds)",
            "training",
            f"{s['multi']}",
            f"{s['single']} (sum)",
            f"{s['boosted']}",
            f"{result['time_multi_over_sum_single']:.2f}x",
            "",
        )
    )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    n = result["rows"]
    lines.insert(
        0,
        f"On the eval split ({n['eval']} rows; trained on {n['train']}, stopped on "
        f"{n['validation']} validation rows; seeds {result['seeds']}):",
    )
    return "\n".join(line.rstrip() for line in lines)

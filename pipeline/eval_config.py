"""The Evaluator's EvalConfig, generated from the spec: never written by hand per dataset.

One ModelSpec: serving_default predictions (a dict keyed by head), labels per head from the
model's `transform_features` signature. One or more MetricsSpecs per head, each with
`output_names=[head]`; the head's gates become value and change thresholds. Slices: overall plus
every slice the spec declares (the `slice_<name>` features Transform makes).
"""

from __future__ import annotations

import tensorflow_model_analysis as tfma

from pipeline import multilabel_metrics
from pipeline.spec import Gate, OutputSpec, Spec, SpecError
from preprocessing.heads import label_name

# spec metric name -> (TFMA metric class, TFMA metric name, higher is better), per head type.
METRICS = {
    "regression": {
        "mae": ("MeanAbsoluteError", "mean_absolute_error", False),
        "rmse": ("RootMeanSquaredError", "root_mean_squared_error", False),
    },
    "binary": {
        "auc": ("AUC", "auc", True),
        "pr_auc": ("AUCPrecisionRecall", "auc_precision_recall", True),
        "precision": ("Precision", "precision", True),
        "recall": ("Recall", "recall", True),
        "accuracy": ("BinaryAccuracy", "binary_accuracy", True),
    },
    "multiclass": {
        "accuracy": ("SparseCategoricalAccuracy", "sparse_categorical_accuracy", True),
        "top_k_accuracy": (
            "SparseTopKCategoricalAccuracy",
            "sparse_top_k_categorical_accuracy",
            True,
        ),
    },
    # Computed for every label at once (see pipeline/multilabel_metrics.py); same names and
    # sub-keys as TFMA's AUC, Precision and Recall binarized per class.
    "multilabel": {
        "auc": ("MultilabelAUC", "auc", True),
        "precision": ("MultilabelPrecision", "precision", True),
        "recall": ("MultilabelRecall", "recall", True),
    },
}
# Metric classes that are not TFMA's own, by the module that defines them.
MODULES = {
    cls.__name__: cls.__module__
    for cls in (
        multilabel_metrics.MultilabelAUC,
        multilabel_metrics.MultilabelPrecision,
        multilabel_metrics.MultilabelRecall,
    )
}
# Reported for every head of the type, never gated.
EXTRA = {
    "regression": ["MeanLabel", "MeanPrediction", "Calibration", "ExampleCount"],
    "binary": ["Calibration", "MeanLabel", "MeanPrediction", "ExampleCount"],
    "multiclass": ["ExampleCount", "MultiClassConfusionMatrixPlot"],
    "multilabel": ["ExampleCount"],
}


def metric_name(head: OutputSpec, metric: str) -> str:
    return METRICS[head.type][metric][1]


def higher_is_better(head: OutputSpec, metric: str) -> bool:
    return METRICS[head.type][metric][2]


def _threshold(gate: Gate, higher: bool) -> tfma.MetricThreshold:
    threshold = tfma.MetricThreshold()
    if gate.min is not None or gate.max is not None:
        bounds = {}
        if gate.min is not None:
            bounds["lower_bound"] = {"value": gate.min}
        if gate.max is not None:
            bounds["upper_bound"] = {"value": gate.max}
        threshold.value_threshold.CopyFrom(tfma.GenericValueThreshold(**bounds))
    if gate.max_regression is not None:
        direction = (
            tfma.MetricDirection.HIGHER_IS_BETTER
            if higher
            else tfma.MetricDirection.LOWER_IS_BETTER
        )
        # Worse than the baseline by more than max_regression fails.
        bound = -gate.max_regression if higher else gate.max_regression
        threshold.change_threshold.CopyFrom(
            tfma.GenericChangeThreshold(direction=direction, absolute={"value": bound})
        )
    return threshold


def _metric_config(class_name: str, **config) -> tfma.MetricConfig:
    import json

    return tfma.MetricConfig(
        class_name=class_name,
        module=MODULES.get(class_name, ""),
        config=json.dumps(config) if config else "",
    )


def num_classes(head: OutputSpec) -> int | None:
    classes = head.options.get("classes")
    if classes:
        return len(classes)
    return head.options.get("max_classes")


def metrics_specs(head: OutputSpec) -> list[tfma.MetricsSpec]:
    table = METRICS[head.type]
    gates = {}
    for gate in head.gates:
        gates.setdefault(gate.metric, []).append(gate)
    configs = []
    for metric in head.metrics:
        class_name, _, higher = table[metric]
        config = _metric_config(
            class_name,
            **({"k": min(3, (num_classes(head) or 4) - 1)} if metric == "top_k_accuracy" else {}),
        )
        if metric in gates:  # every gate on this metric, merged into one threshold
            merged = Gate(
                metric,
                *(
                    next((getattr(g, b) for g in gates[metric] if getattr(g, b) is not None), None)
                    for b in ("min", "max", "max_regression")
                ),
            )
            # Gates judge the overall slice; per-slice values are reported, not gated.
            config.per_slice_thresholds.add(
                slicing_specs=[tfma.SlicingSpec()], threshold=_threshold(merged, higher)
            )
        configs.append(config)
    extras = [_metric_config(name) for name in EXTRA[head.type]]
    if head.type != "multilabel":
        return [tfma.MetricsSpec(output_names=[head.name], metrics=configs + extras)]
    # Multilabel: gates on the macro average over labels; every label's own value reported.
    n = num_classes(head)
    macro = tfma.MetricsSpec(
        output_names=[head.name],
        metrics=configs,
        aggregate=tfma.AggregationOptions(
            macro_average=True, class_weights={i: 1.0 for i in range(n)}
        ),
    )
    per_label = tfma.MetricsSpec(
        output_names=[head.name],
        metrics=[_metric_config(table[m][0]) for m in head.metrics] + extras,
        binarize=tfma.BinarizationOptions(class_ids={"values": list(range(n))}),
    )
    return [macro, per_label]


def build_eval_config(spec: Spec) -> tfma.EvalConfig:
    if not any(o.gates for o in spec.outputs):
        raise SpecError(
            spec.source,
            [
                (
                    "outputs",
                    "no head has gates: the Evaluator blesses no "
                    "model without thresholds; give at least one",
                )
            ],
        )
    specs = [s for head in spec.outputs for s in metrics_specs(head)]
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name="serving_default",
                label_keys={o.name: label_name(o.name) for o in spec.outputs},
                preprocessing_function_names=["transform_features"],
            )
        ],
        metrics_specs=specs,
        slicing_specs=[tfma.SlicingSpec()]
        + [tfma.SlicingSpec(feature_keys=[f"slice_{s.name}"]) for s in spec.slices],
    )

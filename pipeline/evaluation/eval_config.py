"""The Evaluator's EvalConfig, generated from the spec: never written by hand per dataset.

One ModelSpec: serving_default predictions (a dict keyed by head), labels per head from the
model's `transform_features` signature, and per head an example weight, `<head>_label_present`:
an example without that head's label counts in none of its metrics (its weighted example count
is the number of labelled examples). Each head's MetricsSpecs come from its head type's metric
table (every spec with `output_names=[head]`); the head's gates become value and change
thresholds on the overall slice. A rival's config (`rival="gbdt"`) is the same with only the gates
that beat it, as change thresholds against it (the rival is TFMA's baseline model there). Slices: overall plus every slice the spec declares (the
`slice_<name>` features Transform makes).

A head with `calibration: temperature` whose type names `calibration_metrics` (binary: TFMA's
`Calibration` and `CalibrationPlot`) also has them measured on `<head>_uncalibrated`, its
probabilities before the temperature, so the eval split shows its calibration before and after
(the candidate only: a published model may predate the output; never gated).
"""

from __future__ import annotations

import json

import tensorflow_model_analysis as tfma

from pipeline.spec import Gate, OutputSpec, Spec, SpecError
from preprocessing.heads.base import label_name, uncalibrated_name
from preprocessing.transform import slice_name


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


def _merged(metric: str, gates: list[Gate]) -> Gate:
    """Every gate on one metric as one (the first given value of each bound)."""
    return Gate(
        metric,
        *(
            next((getattr(g, b) for g in gates if getattr(g, b) is not None), None)
            for b in ("min", "max", "max_regression")
        ),
    )


def metrics_specs(head: OutputSpec, rival: str | None = None) -> list[tfma.MetricsSpec]:
    """The head's metrics, thresholds from its gates against the published model (rival None) or
    from its gates that beat `rival` (then TFMA's baseline model is the rival)."""
    head_type = head.head_type
    gates: dict[str, list[Gate]] = {}
    for gate in head.gates:
        if gate.beats == rival:
            gates.setdefault(gate.metric, []).append(gate)
    configs = []
    for name in head.metrics:
        metric = head_type.metric_table[name]
        options = metric.tfma_config(head) if metric.tfma_config else {}
        config = tfma.MetricConfig(
            class_name=metric.tfma_class,
            module=metric.tfma_module,
            config=json.dumps(options) if options else "",
        )
        if name in gates:
            # Gates judge the overall slice; per-slice values are reported, not gated.
            config.per_slice_thresholds.add(
                slicing_specs=[tfma.SlicingSpec()],
                threshold=_threshold(_merged(name, gates[name]), metric.higher_is_better),
            )
        configs.append(config)
    extras = [
        tfma.MetricConfig(class_name=name)
        for name in (*head_type.tfma_extras, "WeightedExampleCount")
    ]
    return head_type.tfma_metrics_specs(head, configs, extras)


def uncalibrated_heads(spec: Spec) -> list[OutputSpec]:
    """The heads TFMA also judges before their temperature."""
    return [
        o
        for o in spec.outputs
        if o.calibration == "temperature" and o.head_type.calibration_metrics
    ]


def uncalibrated_metrics_specs(head: OutputSpec) -> list[tfma.MetricsSpec]:
    names = (*head.head_type.calibration_metrics, "WeightedExampleCount")
    return [
        tfma.MetricsSpec(
            output_names=[uncalibrated_name(head.name)],
            model_names=[tfma.CANDIDATE_KEY],  # TFMA makes it "" when there is no baseline
            metrics=[tfma.MetricConfig(class_name=n) for n in names],
        )
    ]


def build_eval_config(spec: Spec, rival: str | None = None) -> tfma.EvalConfig:
    """The Evaluator's config (rival None), or a rival's (the candidate against the rival model
    as TFMA's baseline: every metric of both per head and slice, the `beats` gates thresholds)."""
    if rival is None and not any(not g.beats for o in spec.outputs for g in o.gates):
        raise SpecError(
            spec.source,
            [
                (
                    "outputs",
                    "no head has gates (besides beats): the Evaluator blesses no "
                    "model without thresholds; give at least one",
                )
            ],
        )
    before = uncalibrated_heads(spec) if rival is None else []
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name="serving_default",
                label_keys={
                    **{o.name: label_name(o.name) for o in spec.outputs},
                    **{uncalibrated_name(o.name): label_name(o.name) for o in before},
                },
                example_weight_keys={
                    **{o.name: o.label_present for o in spec.outputs},
                    **{uncalibrated_name(o.name): o.label_present for o in before},
                },
                preprocessing_function_names=["transform_features"],
            )
        ],
        metrics_specs=[s for head in spec.outputs for s in metrics_specs(head, rival)]
        + [s for head in before for s in uncalibrated_metrics_specs(head)],
        slicing_specs=[tfma.SlicingSpec()]
        + [tfma.SlicingSpec(feature_keys=[slice_name(s.name)]) for s in spec.slices],
    )

"""An evaluation as one typed summary: per head, per slice, per metric; the gates and their results.

`EvaluationSummary.from_tfma(uri)` reads the Evaluator's output; `to_dict`/`from_dict` give the
JSON kept in each registry version's model card. The pusher, the CLI, the notebook, the MLflow
push and the bench all read this one type; the gate table and the weakest slices come from it.
Metric keys are TFMA's (`mean_absolute_error`, `auc/macro`, `auc/class_3`); a baseline model's
values are prefixed `baseline:`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from pipeline.spec import OutputSpec, Spec

OVERALL = "overall"
MIN_SLICE_EXAMPLES = 10  # smaller slices are reported but never called the weakest


@dataclass(frozen=True)
class Failure:
    """A threshold the candidate missed."""

    head: str
    metric: str  # TFMA's metric name
    value: float | None
    change: bool  # True: the change from the baseline failed; False: the value itself
    message: str


@dataclass(frozen=True)
class GateRow:
    head: str
    metric: str  # the spec's name
    value: float | None
    threshold: str
    baseline: float | None
    passed: bool
    why: str


@dataclass(frozen=True)
class WeakSlice:
    head: str
    metric: str
    slice: str
    value: float
    overall: float | None
    examples: int


@dataclass
class EvaluationSummary:
    metrics: dict = field(default_factory=dict)  # head -> slice -> metric key -> value
    ok: bool = False
    failures: list[Failure] = field(default_factory=list)

    # -- reading and writing --------------------------------------------------------------------
    @classmethod
    def from_tfma(cls, evaluation_uri: str) -> EvaluationSummary:
        import tensorflow_model_analysis as tfma

        metrics: dict = {}
        for slice_metrics in tfma.load_metrics(evaluation_uri):
            slice_name = _slice_name(slice_metrics.slice_key)
            for kv in slice_metrics.metric_keys_and_values:
                if kv.key.is_diff or not kv.value.HasField("double_value"):
                    continue
                head = kv.key.output_name or "_"
                name = kv.key.name
                if kv.key.HasField("sub_key") and kv.key.sub_key.HasField("class_id"):
                    name = f"{name}/class_{kv.key.sub_key.class_id.value}"
                if kv.key.HasField("aggregation_type"):
                    name = f"{name}/macro"
                if kv.key.model_name == "baseline":
                    name = f"baseline:{name}"
                metrics.setdefault(head, {}).setdefault(slice_name, {})[name] = (
                    kv.value.double_value.value
                )
        result = tfma.load_validation_result(evaluation_uri)
        failures = []
        for per_slice in result.metric_validations_per_slice:
            for f in per_slice.failures:
                value = (
                    f.metric_value.double_value.value
                    if f.metric_value.HasField("double_value")
                    else None
                )
                failures.append(
                    Failure(
                        head=f.metric_key.output_name,
                        metric=f.metric_key.name,
                        value=value,
                        change=f.metric_key.is_diff,
                        message=f.message or _describe_failure(f, value),
                    )
                )
        return cls(metrics, bool(result.validation_ok), failures)

    def to_dict(self) -> dict:
        return {
            "metrics": self.metrics,
            "validation": {"ok": self.ok, "failures": [asdict(f) for f in self.failures]},
        }

    @classmethod
    def from_dict(cls, d: dict) -> EvaluationSummary:
        validation = d.get("validation", {})
        return cls(
            metrics=d.get("metrics", {}),
            ok=bool(validation.get("ok", False)),
            failures=[Failure(**f) for f in validation.get("failures", [])],
        )

    # -- questions ------------------------------------------------------------------------------
    def value(self, head: str, key: str, slice_name: str = OVERALL) -> float | None:
        return self.metrics.get(head, {}).get(slice_name, {}).get(key)

    def gate_rows(self, spec: Spec) -> list[GateRow]:
        """One row per gate: head, metric, value, threshold, baseline value, pass/fail."""
        rows = []
        for head in spec.outputs:
            head_type = head.head_type
            for gate in head.gates:
                key = head_type.summary_key(gate.metric)
                baseline = self.value(head.name, f"baseline:{key}")
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
                tfma_name = head_type.metric_table[gate.metric].tfma_key
                failed = [f for f in self.failures if f.head == head.name and f.metric == tfma_name]
                rows.append(
                    GateRow(
                        head=head.name,
                        metric=gate.metric,
                        value=self.value(head.name, key),
                        threshold=", ".join(bounds),
                        baseline=baseline,
                        passed=not failed,
                        why="; ".join(f.message for f in failed),
                    )
                )
        return rows

    def weakest_slices(self, spec: Spec) -> list[WeakSlice]:
        """The worst slice (of at least MIN_SLICE_EXAMPLES examples) of each head's first gated
        metric (else its first metric)."""
        out = []
        for head in spec.outputs:
            metric = headline_metric(head)
            head_type = head.head_type
            key = head_type.summary_key(metric)
            candidates = []
            for slice_name, values in self.metrics.get(head.name, {}).items():
                if slice_name == OVERALL or key not in values:
                    continue
                count = examples_in(values)
                count = MIN_SLICE_EXAMPLES if count is None else count
                if "auc" in metric and values[key] in (0.0, 1.0):
                    continue  # one class only in this slice: its AUC says nothing
                if count >= MIN_SLICE_EXAMPLES:
                    candidates.append((values[key], slice_name, count))
            if candidates:
                pick = min if head_type.higher_is_better(metric) else max
                value, slice_name, count = pick(candidates)
                out.append(
                    WeakSlice(
                        head.name, metric, slice_name, value, self.value(head.name, key), int(count)
                    )
                )
        return out

    def headline(self, spec: Spec) -> str:
        """Each head's first gated metric (else its first metric), overall."""
        parts = []
        for head in spec.outputs:
            metric = headline_metric(head)
            value = self.value(head.name, head.head_type.summary_key(metric))
            parts.append(f"{head.name} {metric}={fmt(value)}")
        return "; ".join(parts)


def examples_in(values: dict) -> float | None:
    """A slice's example count from its metrics. With label masks, the weighted count is the
    examples with this head's label; a multilabel head counts per label (all the same)."""
    for key in ("weighted_example_count", "example_count"):
        for name in (key, f"{key}/class_0"):
            if name in values:
                return values[name]
    return None


def headline_metric(head: OutputSpec) -> str:
    return head.gates[0].metric if head.gates else head.metrics[0]


def fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _slice_name(slice_key) -> str:
    if not slice_key.single_slice_keys:
        return OVERALL
    parts = []
    for k in slice_key.single_slice_keys:
        if k.HasField("bytes_value"):
            value = k.bytes_value.decode()
        elif k.HasField("int64_value"):
            value = k.int64_value
        else:
            value = k.float_value
        parts.append(f"{k.column}={value}")
    return ", ".join(parts)


def _describe_failure(failure, value) -> str:
    threshold = failure.metric_threshold
    what = "change from the baseline" if failure.metric_key.is_diff else "value"
    bounds = []
    fields = {
        "value_threshold": ("lower_bound", "upper_bound"),
        "change_threshold": ("absolute", "relative"),
    }
    labels = {"absolute": "allowed change", "relative": "allowed relative change"}
    for kind, names in fields.items():
        if threshold.HasField(kind):
            t = getattr(threshold, kind)
            for b in names:
                if t.HasField(b):
                    bounds.append(f"{labels.get(b, b.replace('_', ' '))} {getattr(t, b).value:g}")
    shown = "none" if value is None else f"{value:.4f}"
    return f"{what} {shown} is outside {', '.join(bounds) or 'the threshold'}"

"""An evaluation as one typed summary: per head, per slice, per metric; the gates and their results.

`EvaluationSummary.from_tfma(uri)` reads the Evaluator's output; `to_dict`/`from_dict` give the
JSON kept in each registry version's model card. The pusher, the CLI, the notebook, the MLflow
push and the bench all read this one type; the gate table and the weakest slices come from it.
Metric keys are TFMA's (`mean_absolute_error`, `auc/macro`, `auc/class_3`); a baseline model's
values are prefixed `baseline:`, a rival's (the boosted trees, `evaluation.baselines`) by its name
(`gbdt:auc`), read from the rival's own evaluation (the candidate against it).
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
    rival: str | None = None  # a `beats` gate's rival (gbdt); None: the published model


@dataclass(frozen=True)
class GateRow:
    head: str
    metric: str  # the spec's name
    value: float | None
    threshold: str
    baseline: float | None
    passed: bool
    why: str
    rivals: dict = field(default_factory=dict)  # {rival: its value of this metric}
    beats_rival: str | None = None  # a `beats` gate: baseline is that rival's value


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
    def from_tfma(cls, evaluation_uri: str, rivals: dict | None = None) -> EvaluationSummary:
        """The Evaluator's output; `rivals` {name: the uri of the candidate's evaluation against
        that rival}: its values (`<name>:<key>`) and its `beats` gates join this summary."""
        metrics: dict = {}
        _read_metrics(evaluation_uri, metrics, "baseline")
        ok, failures = _read_validation(evaluation_uri, None)
        for name, uri in (rivals or {}).items():
            _read_metrics(uri, metrics, name, candidate=False)
            rival_ok, rival_failures = _read_validation(uri, name)
            ok, failures = ok and rival_ok, failures + rival_failures
        return cls(metrics, ok, failures)

    def to_dict(self) -> dict:
        return {
            "metrics": self.metrics,
            "validation": {
                "ok": self.ok,
                "failures": [
                    {k: v for k, v in asdict(f).items() if k != "rival" or v} for f in self.failures
                ],
            },
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

    def rival_names(self) -> list[str]:
        """The rivals this summary holds values of (gbdt), in the order first seen."""
        names = {}
        for slices in self.metrics.values():
            for key in slices.get(OVERALL, {}):
                prefix, _, rest = key.partition(":")
                if rest and prefix != "baseline":
                    names[prefix] = None
        return list(names)

    def gate_rows(self, spec: Spec) -> list[GateRow]:
        """One row per gate: head, metric, value, threshold, baseline value (the published
        model's, or for a `beats` gate its rival's), pass/fail, and every rival's value."""
        rows = []
        rival_names = self.rival_names()
        for head in spec.outputs:
            head_type = head.head_type
            for gate in head.gates:
                key = head_type.summary_key(gate.metric)
                rivals = {r: self.value(head.name, f"{r}:{key}") for r in rival_names}
                bounds = []
                if gate.beats:
                    baseline = rivals.get(gate.beats)
                    bounds.append(
                        (
                            f"not worse than {gate.beats}"
                            if not gate.max_regression
                            else f"worse than {gate.beats} by <= {gate.max_regression}"
                        )
                        if baseline is not None
                        else f"({gate.beats} not evaluated)"
                    )
                else:
                    baseline = self.value(head.name, f"baseline:{key}")
                if gate.min is not None:
                    bounds.append(f">= {gate.min}")
                if gate.max is not None:
                    bounds.append(f"<= {gate.max}")
                if gate.max_regression is not None and not gate.beats:
                    bounds.append(
                        f"worse than baseline by <= {gate.max_regression}"
                        if baseline is not None
                        else "(no baseline yet)"
                    )
                tfma_name = head_type.metric_table[gate.metric].tfma_key
                failed = [
                    f
                    for f in self.failures
                    if f.head == head.name and f.metric == tfma_name and f.rival == gate.beats
                ]
                rows.append(
                    GateRow(
                        head=head.name,
                        metric=gate.metric,
                        value=self.value(head.name, key),
                        threshold=", ".join(bounds),
                        baseline=baseline,
                        passed=not failed,
                        why="; ".join(f.message for f in failed),
                        rivals=rivals,
                        beats_rival=gate.beats,
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


def rivals(rival_evaluation_uri: str | None) -> dict:
    """{rival: the uri of the candidate's evaluation against it} for from_tfma: the
    BoostedEvaluator's evaluation is against the boosted trees (gbdt)."""
    return {"gbdt": rival_evaluation_uri} if rival_evaluation_uri else {}


def _read_metrics(uri: str, metrics: dict, baseline_name: str, candidate: bool = True) -> None:
    """Adds the evaluation's values to metrics (head -> slice -> key): the candidate's under
    TFMA's keys (when `candidate`), TFMA's baseline model's under `<baseline_name>:<key>`."""
    import tensorflow_model_analysis as tfma

    for slice_metrics in tfma.load_metrics(uri):
        slice_name = _slice_name(slice_metrics.slice_key)
        for kv in slice_metrics.metric_keys_and_values:
            if kv.key.is_diff or not kv.value.HasField("double_value"):
                continue
            is_baseline = kv.key.model_name == "baseline"
            if not candidate and not is_baseline:
                continue
            head = kv.key.output_name or "_"
            name = kv.key.name
            if kv.key.HasField("sub_key") and kv.key.sub_key.HasField("class_id"):
                name = f"{name}/class_{kv.key.sub_key.class_id.value}"
            if kv.key.HasField("aggregation_type"):
                name = f"{name}/macro"
            if is_baseline:
                name = f"{baseline_name}:{name}"
            metrics.setdefault(head, {}).setdefault(slice_name, {})[name] = (
                kv.value.double_value.value
            )


def _read_validation(uri: str, rival: str | None) -> tuple[bool, list[Failure]]:
    import tensorflow_model_analysis as tfma

    result = tfma.load_validation_result(uri)
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
                    message=f.message or _describe_failure(f, value, rival),
                    rival=rival,
                )
            )
    return bool(result.validation_ok), failures


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


def _describe_failure(failure, value, rival: str | None = None) -> str:
    threshold = failure.metric_threshold
    what = "change from the baseline" if failure.metric_key.is_diff else "value"
    if rival:
        what = f"change from {rival}"
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

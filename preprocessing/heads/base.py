"""What a head type is: everything about one kind of output, owned in one place.

A head type declares its options, transforms its label, checks its label column for the data
gate, learns what it needs from the training labels (a scale, class priors), builds its output
layer, loss and Keras metrics, names what it serves, and keeps **one metric table**: for each
metric a spec may name, the Keras metric, the TFMA metric and its result key, which direction
is better and what a trivial predictor scores. The trainer, the Evaluator's configuration, the
reports and the bench read that table; none of them knows head types by name.

Labels are transformed per head into `<head>_label`, with `<head>_label_present` (1.0 where the
example has a label for this head: the others weigh 0 in its loss and metrics, and stay in every
other head's). Every hook receives the head's `OutputSpec` (`head.name`, `head.column`,
`head.options`, `head.metrics`, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import tensorflow as tf

from preprocessing.base import BYTES, FLOAT, INT
from preprocessing.options import Configurable


def label_name(head: str) -> str:
    return f"{head}_label"


def uncalibrated_name(head: str) -> str:
    """serving_default's output of a calibrated head's probabilities before its temperature (TFMA
    judges both: pipeline/evaluation/eval_config.py)."""
    return f"{head}_uncalibrated"


def label_present_name(head: str) -> str:
    """The 0/1 feature saying whether an example counts for this head (its label is present)."""
    return f"{head}_label_present"


@dataclass(frozen=True)
class Metric:
    """One row of a head type's metric table."""

    name: str  # as the spec names it (`metrics:`, `gates:`)
    keras: Callable[[Any, Any], Any]  # (head, info) -> a tf_keras metric named `name`
    tfma_class: str  # the TFMA metric class
    tfma_key: str  # the metric's name in TFMA's results
    higher_is_better: bool
    # (y_train, y_eval) -> what a trivial predictor scores on the eval labels; None: not defined
    trivial: Callable[[np.ndarray, np.ndarray], float] | None = None
    tfma_module: str = ""  # the module defining tfma_class, when it is not TFMA's own
    tfma_config: Callable[[Any], dict] | None = None  # head -> the metric's TFMA config
    # (labels, predictions) of the labelled examples, as keras_label and the output shape them
    # -> the exact value (mimo monitor on served requests; Keras' AUC buckets 200 thresholds,
    # too coarse for probabilities that sit close together); None: the Keras metric is used
    score: Callable[[np.ndarray, np.ndarray], float] | None = None


def exact_auc(y: np.ndarray, p: np.ndarray) -> float:
    """The ROC AUC of scores `p` for 0/1 labels `y` (Mann-Whitney, ties counted half); 0.5 when
    one class is absent."""
    y, p = np.asarray(y).reshape(-1), np.asarray(p, np.float64).reshape(-1)
    positives, negatives = int((y > 0.5).sum()), int((y <= 0.5).sum())
    if not positives or not negatives:
        return 0.5
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p))
    sorted_p = p[order]
    # average ranks over ties
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_p)) + 1]
    ends = np.r_[starts[1:], len(p)]
    for a, b in zip(starts, ends, strict=True):
        ranks[order[a:b]] = (a + b + 1) / 2
    return float((ranks[y > 0.5].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def keras_metric(cls_name: str, name: str, **kwargs) -> Callable[[Any, Any], Any]:
    """A Metric's `keras` builder: tf_keras.metrics.<cls_name>(name=name, **kwargs), in float32
    whatever the precision policy: under mixed_float16 a metric's state would otherwise be an
    AutoCastVariable, and reading a slice of it across replicas (AUC's PR interpolation) aborts
    the epoch under MirroredStrategy (tests/trainer/test_selection.py)."""

    def build(head, info):
        import tf_keras as keras

        return getattr(keras.metrics, cls_name)(name=name, dtype="float32", **kwargs)

    return build


class HeadType(Configurable):
    kind = "head type"
    losses: ClassVar[tuple[str, ...]]  # the first is the default
    metric_table: ClassVar[dict[str, Metric]]
    primary: ClassVar[str]  # the metric that says how good the head is, in one number
    schema_types: ClassVar[frozenset[str]] = frozenset({INT, FLOAT, BYTES})
    # How a CSV label column is typed (None: from its values); see components/csv_example_gen.py.
    csv_type: ClassVar[str | None] = None
    accepts_class_weights: ClassVar[bool] = False
    # TFMA metrics reported for every head of the type, never gated.
    tfma_extras: ClassVar[tuple[str, ...]] = ("ExampleCount",)
    # The plots report.html shows for the head besides its gates, learning curves and slices
    # (pipeline/evaluation/html_report.py: roc_pr, calibration, confusion, label_auc, slice_means);
    # each reads TFMA's plots or metrics, so tfma_extras must ask for what they read.
    report_plots: ClassVar[tuple[str, ...]] = ()
    activation: ClassVar[str | None] = None
    # TFMA's metrics judging a calibrated head's probabilities before its temperature, beside
    # the same ones of tfma_extras after it (empty: the training report's before/after only).
    calibration_metrics: ClassVar[tuple[str, ...]] = ()

    @property
    def default_loss(self) -> str:
        return self.losses[0]

    def default_metrics(self, options: dict) -> tuple[str, ...]:
        """The metrics a head gets when the spec lists none."""
        return tuple(self.metric_table)

    def metric_problem(self, metric: str, options: dict) -> str | None:
        """Why `metric` cannot be computed for a head with these options (None: it can)."""
        return None

    # -- data -----------------------------------------------------------------------------------
    def transform_label(self, x, head) -> tuple[tf.Tensor, tf.Tensor]:
        """([batch] or [batch, n] label, [batch] bool: the example has a usable label)."""
        raise NotImplementedError

    def label_checks(self, head, column_type: str, column_stats: dict) -> list[str]:
        """Problems of the label column for the data gate (one line each, no location).

        `column_type` is the schema's (INT, FLOAT, BYTES); `column_stats` maps split name to
        TFDV's FeatureNameStatistics of the column."""
        return []

    def label_notes(self, head, column_type: str, column_stats: dict) -> list[str]:
        """What the data gate prints as warnings about the label column (arguments as for
        label_checks): facts that change what the head learns without stopping the run."""
        return []

    def label_stats(self, y: np.ndarray, head, info) -> dict:
        """What the model needs from the training labels (here: the class priors, if any)."""
        return {}

    # -- the model side -------------------------------------------------------------------------
    def num_units(self, head, info) -> int:
        return 1

    def build_output(self, x, head, info):
        """The head's output layer, named after the head, computed in float32.

        Its bias starts at the training prior (log-odds, or log-frequencies for softmax), so the
        head predicts the base rate from the first step instead of learning it first.
        """
        import tf_keras as keras

        prior = info.head_stats.get(head.name, {}).get("prior")
        bias = "zeros"
        if prior is not None:
            prior = np.atleast_1d(prior)
            start = np.log(prior) if self.activation == "softmax" else np.log(prior / (1 - prior))
            bias = keras.initializers.Constant(start.astype("float32"))
        if head.calibration == "temperature" and self.activation:
            from trainer.layers import TemperatureActivation

            # Logits, then the activation at a temperature fitted after training
            # (trainer/calibration.py); 1 while training.
            logits = keras.layers.Dense(
                self.num_units(head, info),
                bias_initializer=bias,
                dtype="float32",
                name=f"{head.name}_logits",
            )(x)
            return TemperatureActivation(self.activation, dtype="float32", name=head.name)(logits)
        return keras.layers.Dense(
            self.num_units(head, info),
            activation=self.activation,
            bias_initializer=bias,
            dtype="float32",
            name=head.name,
        )(x)

    def keras_label(self, label: tf.Tensor) -> tf.Tensor:
        """The transformed label as the loss wants it."""
        return label

    def keras_loss(self, head, info):
        raise NotImplementedError

    def keras_metrics(self, head, info) -> list:
        return [self.metric_table[m].keras(head, info) for m in head.metrics]

    def label_weight(self, label: tf.Tensor, head, info) -> tf.Tensor | None:
        """Per-example weight from the head's class_weights (None: every example weighs 1)."""
        return None

    def serving_outputs(self, head, prediction, info) -> dict:
        """Every output of serving_default for this head (its prediction under its own name)."""
        return {head.name: prediction}

    def monitored_values(self, head, outputs: dict) -> list:
        """What prediction drift compares (pipeline/monitoring/monitor.py): per example, a
        list of values from serving_default's `outputs` (numpy): the prediction itself by
        default (a regression's value, a binary head's probability)."""
        return [[float(v)] for v in np.asarray(outputs[head.name]).reshape(-1)]

    # -- what a trivial predictor scores (the training report's yardstick) ----------------------
    def trivial_loss(self, y_train: np.ndarray, y_eval: np.ndarray) -> float | None:
        return None

    def trivial_baseline(self, y_train: np.ndarray, y_eval: np.ndarray) -> dict:
        """{metric: value} of a trivial predictor on the eval labels, "loss" included."""
        out = {}
        loss = self.trivial_loss(y_train, y_eval)
        if loss is not None:
            out["loss"] = float(loss)
        for name, metric in self.metric_table.items():
            if metric.trivial is not None:
                out[name] = float(metric.trivial(y_train, y_eval))
        return out

    # -- the boosted-trees baseline (trainer/gbdt.py) -------------------------------------------
    tree_task: ClassVar[str] = "CLASSIFICATION"  # YDF's task for each of the head's tree models

    def tree_labels(self, y: np.ndarray) -> list[np.ndarray]:
        """The label of each of the head's tree models, from its transformed labels (one model,
        of the class index or 0/1 flag, by default)."""
        return [y.reshape(len(y), -1)[:, 0].astype(np.int64)]

    def tree_output(self, predictions: list[dict], head, info) -> tf.Tensor:
        """The head's output, shaped as the network's, from its tree models' predictions
        (`values`, and `classes` for classifiers): one positive-class probability per model.
        TensorFlow ops on arrays or tensors: the same code scores in Python and serves in the
        exported boosted model."""
        return tf.stack([positive_probability(p) for p in predictions], axis=1)

    # -- evaluation (TFMA) ----------------------------------------------------------------------
    def higher_is_better(self, metric: str) -> bool:
        return metric != "loss" and self.metric_table[metric].higher_is_better

    def summary_key(self, metric: str) -> str:
        """The key of `metric`'s overall value in an evaluation summary (what gates judge)."""
        return self.metric_table[metric].tfma_key

    def tfma_metrics_specs(self, head, configs: list, extras: list) -> list:
        """The head's MetricsSpecs from its metric configs (thresholds set) and the extras."""
        import tensorflow_model_analysis as tfma

        return [tfma.MetricsSpec(output_names=[head.name], metrics=configs + extras)]


# -- helpers shared by the classifier head types ------------------------------------------------
def positive_probability(prediction: dict):
    """A binary tree model's probability of 1 (YDF gives that of its second label class)."""
    values, classes = prediction["values"], prediction["classes"]
    return values if classes[-1] == "1" else 1.0 - values


def class_index(values: tf.Tensor, classes: list) -> tf.Tensor:
    """[n] strings -> [n] int64 positions in `classes`, -1 where absent (no lookup table)."""
    keys = tf.constant([str(c) for c in classes])
    match = tf.equal(values[:, None], keys[None, :])
    index = tf.argmax(tf.cast(match, tf.int32), axis=1)
    return tf.where(tf.reduce_any(match, axis=1), index, tf.constant(-1, tf.int64))


def clipped_prior(y: np.ndarray) -> np.ndarray:
    """The training frequency of 1 per column, kept away from 0 and 1."""
    return np.clip(y.astype(np.float64).mean(axis=0), 1e-4, 1 - 1e-4)


def prior_log_loss(y_train: np.ndarray, y_eval: np.ndarray) -> float:
    """Binary cross-entropy of predicting the training prior, summed over label columns."""
    prior = np.clip(y_train.mean(axis=0), 1e-7, 1 - 1e-7)
    bce = -(y_eval * np.log(prior) + (1 - y_eval) * np.log(1 - prior)).mean(axis=0)
    return float(np.sum(bce))


def labels_outside_classes(head, column_stats: dict, split_cell=None) -> list[str]:
    """Per split, the labels outside the head's declared `classes` with their counts, from
    TFDV's rank histogram of the string label column (its most frequent distinct cells: exact
    unless a split has more distinct cells than the histogram keeps, which the line says).
    `split_cell(cell)` gives a cell's labels (default: the cell is one label)."""
    if not head.options.get("classes"):
        return []
    known = {str(c) for c in head.options["classes"]}
    lines = []
    for split, stats in sorted(column_stats.items()):
        if stats.WhichOneof("stats") != "string_stats":
            continue
        buckets = stats.string_stats.rank_histogram.buckets
        unknown: dict[str, int] = {}
        for b in buckets:
            for label in split_cell(b.label) if split_cell else [b.label]:
                if label not in known:
                    unknown[label] = unknown.get(label, 0) + int(b.sample_count)
        if not unknown:
            continue
        values = ", ".join(
            f"{v!r} x{n}" for v, n in sorted(unknown.items(), key=lambda x: -x[1])[:10]
        )
        scope = ""
        if stats.string_stats.unique > len(buckets):
            scope = f" (counted in its {len(buckets)} most frequent cells)"
        lines.append(
            f"column {head.column!r} (output '{head.name}') has {sum(unknown.values())} "
            f"label(s) outside its `classes` in split '{split}'{scope}: {values}"
        )
    return lines


def unique_count(column_stats: dict) -> int | None:
    """The most distinct values TFDV saw in a string column over the splits (None: unknown)."""
    counts = [
        s.string_stats.unique
        for s in column_stats.values()
        if s.WhichOneof("stats") == "string_stats"
    ]
    return max(counts) if counts else None

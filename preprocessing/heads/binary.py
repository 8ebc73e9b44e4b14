"""Binary heads: a flag, from a number above a threshold or a string among positive values."""

from __future__ import annotations

import tensorflow as tf

from preprocessing.base import BYTES, dense_with_mask
from preprocessing.heads.base import (
    HeadType,
    Metric,
    clipped_prior,
    exact_auc,
    keras_metric,
    prior_log_loss,
)
from preprocessing.options import NameList, Nullable, Number, Option
from preprocessing.registry import HEAD_TYPES


def _rate(y_eval):
    return float(y_eval.mean()) if y_eval.size else 0.0


class Binary(HeadType):
    name = "binary"
    doc = "a yes/no flag (sigmoid); class_weights {0: w0, 1: w1} weigh the loss"
    losses = ("binary_crossentropy", "focal")
    accepts_class_weights = True
    primary = "auc"
    activation = "sigmoid"
    options = {
        "threshold": Option(0, "numeric labels are positive when greater than this", Number()),
        "positive_values": Option(
            None,
            "string labels: the values counted as positive (required for a string column)",
            Nullable(NameList(1, "value")),
        ),
    }
    metric_table = {
        "auc": Metric(
            "auc",
            keras_metric("AUC", "auc"),
            "AUC",
            "auc",
            True,
            trivial=lambda y_train, y_eval: 0.5,
            score=exact_auc,
        ),
        "pr_auc": Metric(
            "pr_auc",
            keras_metric("AUC", "pr_auc", curve="PR"),
            "AUCPrecisionRecall",
            "auc_precision_recall",
            True,
            trivial=lambda y_train, y_eval: _rate(y_eval),
        ),
        "precision": Metric(
            "precision", keras_metric("Precision", "precision"), "Precision", "precision", True
        ),
        "recall": Metric("recall", keras_metric("Recall", "recall"), "Recall", "recall", True),
        "accuracy": Metric(
            "accuracy",
            keras_metric("BinaryAccuracy", "accuracy"),
            "BinaryAccuracy",
            "binary_accuracy",
            True,
            trivial=lambda y_train, y_eval: max(_rate(y_eval), 1 - _rate(y_eval)),
        ),
    }
    tfma_extras = (
        "Calibration",
        "MeanLabel",
        "MeanPrediction",
        "ExampleCount",
        "ConfusionMatrixPlot",
        "CalibrationPlot",
    )
    report_plots = ("roc_pr", "calibration")
    calibration_metrics = ("Calibration", "CalibrationPlot")

    def transform_label(self, x, head):
        options = head.options
        values, present = dense_with_mask(x, "" if x.dtype == tf.string else 0)
        if values.dtype == tf.string:
            if not options["positive_values"]:
                raise ValueError("a binary head on a string column needs `positive_values`")
            positive = tf.constant([str(v) for v in options["positive_values"]])
            hit = tf.reduce_any(tf.equal(values[:, None], positive[None, :]), axis=1)
        else:
            number = tf.cast(values, tf.float64)
            present = present & tf.math.is_finite(number)
            hit = number > float(options["threshold"])
        return tf.cast(hit & present, tf.float32), present

    def label_checks(self, head, column_type, column_stats):
        if column_type == BYTES and not head.options["positive_values"]:
            return [
                f"column {head.column!r} (output '{head.name}') holds strings: "
                "set `positive_values` on the head to say which values are positive"
            ]
        return []

    def label_stats(self, y, head, info):
        return {"prior": clipped_prior(y)} if y.size else {}

    def keras_label(self, label):
        return label[:, None]

    def keras_loss(self, head, info):
        import tf_keras as keras

        if head.loss == "focal":
            return keras.losses.BinaryFocalCrossentropy()
        return keras.losses.BinaryCrossentropy()

    def label_weight(self, label, head, info):
        if not head.class_weights:
            return None
        w0 = head.class_weights.get("0", 1.0)
        w1 = head.class_weights.get("1", 1.0)
        return tf.where(label > 0.5, w1, w0)

    def trivial_loss(self, y_train, y_eval):
        return prior_log_loss(y_train, y_eval)


HEAD_TYPES.register(Binary())

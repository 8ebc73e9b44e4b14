"""Regression heads: a number, learnt as a z-score and predicted in label units."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from preprocessing.base import FLOAT, INT, dense_with_mask
from preprocessing.heads.base import HeadType, Metric, keras_metric
from preprocessing.registry import HEAD_TYPES


class Regression(HeadType):
    name = "regression"
    doc = "a number (float label); the loss is computed on standardized values"
    losses = ("mse", "huber", "mae")
    schema_types = frozenset({INT, FLOAT})
    csv_type = FLOAT  # a column of integers today may hold 181.5 tomorrow
    primary = "mae"
    metric_table = {
        "mae": Metric(
            "mae",
            keras_metric("MeanAbsoluteError", "mae"),
            "MeanAbsoluteError",
            "mean_absolute_error",
            higher_is_better=False,
            trivial=lambda y_train, y_eval: np.abs(y_eval - y_train.mean()).mean(),
            score=lambda y, p: float(np.abs(y.reshape(-1) - p.reshape(-1)).mean()),
        ),
        "rmse": Metric(
            "rmse",
            keras_metric("RootMeanSquaredError", "rmse"),
            "RootMeanSquaredError",
            "root_mean_squared_error",
            higher_is_better=False,
            trivial=lambda y_train, y_eval: np.sqrt(((y_eval - y_train.mean()) ** 2).mean()),
        ),
    }
    tfma_extras = ("MeanLabel", "MeanPrediction", "Calibration", "ExampleCount")
    report_plots = ("slice_means",)

    def transform_label(self, x, head):
        values, present = dense_with_mask(x, 0)
        values = tf.cast(values, tf.float32)
        present = present & tf.math.is_finite(values)  # a NaN is a missing label
        return tf.where(present, values, tf.zeros_like(values)), present

    def label_stats(self, y, head, info):
        """The training labels' mean and standard deviation (1 when constant)."""
        v = y.astype(np.float64)
        mean = float(v.mean()) if v.size else 0.0
        std = float(v.std()) if v.size and v.std() > 0 else 1.0
        return {"mean": mean, "std": std}

    def build_output(self, x, head, info):
        """Learns z-scores, predicts in label units (mean/std of the training labels)."""
        import tf_keras as keras

        from trainer.layers import Rescale

        stats = info.head_stats[head.name]
        z = keras.layers.Dense(1, dtype="float32", name=f"{head.name}_z")(x)
        return Rescale(stats["mean"], stats["std"], dtype="float32", name=head.name)(z)

    def keras_label(self, label):
        return label[:, None]

    tree_task = "REGRESSION"

    def tree_labels(self, y):
        return [y.reshape(-1).astype(np.float32)]

    def tree_output(self, predictions, head, info):
        return tf.reshape(tf.convert_to_tensor(predictions[0]["values"], tf.float32), [-1, 1])

    def keras_loss(self, head, info):
        """The loss on standardized values, so its scale is comparable with other heads'."""
        import tf_keras as keras

        stats = info.head_stats[head.name]
        mean, std = stats["mean"], stats["std"]
        base = {
            "mse": keras.losses.mean_squared_error,
            "mae": keras.losses.mean_absolute_error,
            "huber": keras.losses.huber,
        }[head.loss]

        def standardized_loss(y_true, y_pred):
            return base((y_true - mean) / std, (y_pred - mean) / std)

        standardized_loss.__name__ = f"standardized_{head.loss}"
        return standardized_loss


HEAD_TYPES.register(Regression())

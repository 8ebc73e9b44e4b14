"""Output heads: one class per head type with its defaults, its loss choices and its label transform.

Labels are transformed per head into `<head>_label`:
regression -> float; binary -> 0/1 float; multiclass -> int index into the class list or the
label vocabulary (-1 for a class never seen in training); multilabel -> multi-hot float vector.
"""

from __future__ import annotations

from typing import ClassVar

import tensorflow as tf
import tensorflow_transform as tft

from preprocessing.base import (
    BYTES,
    FLOAT,
    INT,
    Configurable,
    OptionError,
    as_string,
    check_int,
    dense_with_mask,
)
from preprocessing.multi_value import split_values


def label_name(head: str) -> str:
    return f"{head}_label"


def _check_classes(options) -> list:
    classes = options.get("classes")
    if classes is None:
        return []
    if not isinstance(classes, list) or len(classes) < 2:
        return [OptionError("classes", "must be a list of at least two class names")]
    names = [str(c) for c in classes]
    if len(set(names)) != len(names):
        return [OptionError("classes", "lists a class twice")]
    return []


def _class_index(values: tf.Tensor, classes: list) -> tf.Tensor:
    """[n] strings -> [n] int64 positions in `classes`, -1 where absent (no lookup table)."""
    keys = tf.constant([str(c) for c in classes])
    match = tf.equal(values[:, None], keys[None, :])
    index = tf.argmax(tf.cast(match, tf.int32), axis=1)
    return tf.where(tf.reduce_any(match, axis=1), index, tf.constant(-1, tf.int64))


class HeadType(Configurable):
    kind = "head type"
    losses: ClassVar[tuple[str, ...]]
    metrics: ClassVar[tuple[str, ...]]
    schema_types: ClassVar[frozenset[str]] = frozenset({INT, FLOAT, BYTES})

    @property
    def default_loss(self) -> str:
        return self.losses[0]

    def transform_label(self, x, head, options) -> tf.Tensor:
        raise NotImplementedError

    # -- the model side -----------------------------------------------------------------------
    def num_units(self, head, info) -> int:
        return 1

    def build_output(self, x, head, info):
        """The head's output layer, named after the head, computed in float32.

        Its bias starts at the training prior (log-odds, or log-frequencies for softmax), so the
        head predicts the base rate from the first step instead of learning it first.
        """
        import numpy as np
        import tf_keras as keras

        prior = info.label_priors.get(head.name)
        bias = "zeros"
        if prior is not None:
            prior = np.atleast_1d(prior)
            start = np.log(prior) if self.activation == "softmax" else np.log(prior / (1 - prior))
            bias = keras.initializers.Constant(start.astype("float32"))
        return keras.layers.Dense(
            self.num_units(head, info),
            activation=self.activation,
            bias_initializer=bias,
            dtype="float32",
            name=head.name,
        )(x)

    activation: ClassVar[str | None] = None

    def keras_label(self, label: tf.Tensor) -> tf.Tensor:
        """The transformed label as the loss wants it."""
        return label

    def keras_loss(self, head, info):
        raise NotImplementedError

    def keras_metrics(self, head, info) -> list:
        return [self.metric(m, head, info) for m in head.metrics]

    def metric(self, name, head, info):
        raise NotImplementedError

    def serving_outputs(self, head, prediction, info) -> dict:
        """Every output of serving_default for this head (its prediction under its own name)."""
        return {head.name: prediction}

    def label_weight(self, label: tf.Tensor, head, info) -> tf.Tensor | None:
        """Per-example weight from the head's class_weights (None: every example weighs 1)."""
        return None


class Regression(HeadType):
    name = "regression"
    losses = ("mse", "huber", "mae")
    metrics = ("mae", "rmse")
    schema_types = frozenset({INT, FLOAT})

    def build_output(self, x, head, info):
        """Learns z-scores, predicts in label units (mean/std of the training labels)."""
        import tf_keras as keras

        from trainer.layers import Rescale

        mean, std = info.label_stats[head.name]
        z = keras.layers.Dense(1, dtype="float32", name=f"{head.name}_z")(x)
        return Rescale(mean, std, dtype="float32", name=head.name)(z)

    def keras_label(self, label):
        return label[:, None]

    def keras_loss(self, head, info):
        """The loss on standardized values, so its scale is comparable with other heads'."""
        import tf_keras as keras

        mean, std = info.label_stats[head.name]
        base = {
            "mse": keras.losses.mean_squared_error,
            "mae": keras.losses.mean_absolute_error,
            "huber": keras.losses.huber,
        }[head.loss]

        def standardized_loss(y_true, y_pred):
            return base((y_true - mean) / std, (y_pred - mean) / std)

        standardized_loss.__name__ = f"standardized_{head.loss}"
        return standardized_loss

    def metric(self, name, head, info):
        import tf_keras as keras

        if name == "mae":
            return keras.metrics.MeanAbsoluteError(name="mae")
        return keras.metrics.RootMeanSquaredError(name="rmse")

    def transform_label(self, x, head, options):
        values, _ = dense_with_mask(x, 0)
        return tf.cast(values, tf.float32)


class Binary(HeadType):
    name = "binary"
    losses = ("binary_crossentropy", "focal")
    metrics = ("auc", "pr_auc", "precision", "recall", "accuracy")
    defaults = {
        # Numeric labels are positive when greater than `threshold` (e.g. Oscars > 0).
        "threshold": 0,
        # String labels: the values counted as positive (required when the column holds strings).
        "positive_values": None,
    }

    activation = "sigmoid"

    def keras_label(self, label):
        return label[:, None]

    def keras_loss(self, head, info):
        import tf_keras as keras

        if head.loss == "focal":
            return keras.losses.BinaryFocalCrossentropy()
        return keras.losses.BinaryCrossentropy()

    def metric(self, name, head, info):
        import tf_keras as keras

        return {
            "auc": lambda: keras.metrics.AUC(name="auc"),
            "pr_auc": lambda: keras.metrics.AUC(curve="PR", name="pr_auc"),
            "precision": lambda: keras.metrics.Precision(name="precision"),
            "recall": lambda: keras.metrics.Recall(name="recall"),
            "accuracy": lambda: keras.metrics.BinaryAccuracy(name="accuracy"),
        }[name]()

    def label_weight(self, label, head, info):
        if not head.class_weights:
            return None
        w0 = head.class_weights.get("0", 1.0)
        w1 = head.class_weights.get("1", 1.0)
        return tf.where(label > 0.5, w1, w0)

    def validate(self, options):
        errors = []
        if isinstance(options["threshold"], bool) or not isinstance(
            options["threshold"], int | float
        ):
            errors.append(OptionError("threshold", "must be a number"))
        pos = options["positive_values"]
        if pos is not None and (not isinstance(pos, list) or not pos):
            errors.append(OptionError("positive_values", "must be a non-empty list"))
        return errors

    def transform_label(self, x, head, options):
        values, _ = dense_with_mask(x, "" if x.dtype == tf.string else 0)
        if values.dtype == tf.string:
            if not options["positive_values"]:
                raise ValueError("a binary head on a string column needs `positive_values`")
            positive = tf.constant([str(v) for v in options["positive_values"]])
            hit = tf.reduce_any(tf.equal(values[:, None], positive[None, :]), axis=1)
        else:
            hit = tf.cast(values, tf.float64) > float(options["threshold"])
        return tf.cast(hit, tf.float32)


class Multiclass(HeadType):
    name = "multiclass"
    losses = ("sparse_categorical_crossentropy",)
    metrics = ("accuracy", "top_k_accuracy")
    defaults = {
        # The class list, in output order. Without it the classes are the training split's
        # label vocabulary, most frequent first (top_k of them).
        "classes": None,
        "top_k": 1000,
    }

    def validate(self, options):
        return _check_classes(options) + check_int(options, "top_k", 2)

    activation = "softmax"

    def class_names(self, head, info) -> list[str]:
        if head.options["classes"]:
            return [str(c) for c in head.options["classes"]]
        return [v.decode() for v in info.vocabulary(label_name(head.name))]

    def num_units(self, head, info):
        return len(self.class_names(head, info))

    def keras_loss(self, head, info):
        import tf_keras as keras

        return keras.losses.SparseCategoricalCrossentropy()

    def keras_label(self, label):
        return tf.maximum(label, 0)  # -1 (a class unseen in training) weighs 0, see label_weight

    def label_weight(self, label, head, info):
        known = tf.cast(label >= 0, tf.float32)
        if not head.class_weights:
            return known
        names = self.class_names(head, info)
        weights = tf.constant([head.class_weights.get(c, 1.0) for c in names], tf.float32)
        return known * tf.gather(weights, tf.maximum(label, 0))

    def metric(self, name, head, info):
        import tf_keras as keras

        if name == "accuracy":
            return keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        k = min(3, self.num_units(head, info) - 1)
        return keras.metrics.SparseTopKCategoricalAccuracy(k=k, name="top_k_accuracy")

    def serving_outputs(self, head, prediction, info):
        names = tf.constant(self.class_names(head, info))
        return {
            head.name: prediction,
            f"{head.name}_class": tf.gather(names, tf.argmax(prediction, axis=-1)),
        }

    def transform_label(self, x, head, options):
        values, _ = dense_with_mask(x, "" if x.dtype == tf.string else 0)
        values = as_string(values)
        if options["classes"]:
            return _class_index(values, options["classes"])
        vocab = tft.vocabulary(values, top_k=options["top_k"], vocab_filename=label_name(head))
        return tft.apply_vocabulary(values, vocab, default_value=-1)


class Multilabel(HeadType):
    name = "multilabel"
    losses = ("binary_crossentropy",)
    metrics = ("auc", "precision", "recall")
    schema_types = frozenset({BYTES})
    defaults = {
        "delimiter": ",",
        # The label set, in output order. Without it, `max_classes` must be given: the labels
        # are then the training split's most frequent `max_classes` values.
        "classes": None,
        "max_classes": None,
    }

    def validate(self, options):
        errors = _check_classes(options) + check_int(options, "max_classes", 2, allow_none=True)
        if options["classes"] is None and options["max_classes"] is None:
            errors.append(
                OptionError(
                    "classes",
                    "a multilabel head needs `classes` (the label set) or `max_classes` "
                    "(the size of its vector: the most frequent labels)",
                )
            )
        return errors

    def depth(self, options) -> int:
        return len(options["classes"]) if options["classes"] else options["max_classes"]

    activation = "sigmoid"

    def class_names(self, head, info) -> list[str]:
        if head.options["classes"]:
            return [str(c) for c in head.options["classes"]]
        names = [v.decode() for v in info.vocabulary(label_name(head.name))]
        return names + [f"<unused {i}>" for i in range(len(names), self.depth(head.options))]

    def num_units(self, head, info):
        return self.depth(head.options)

    def keras_loss(self, head, info):
        """Binary cross-entropy summed over the labels: each label weighs as much as a binary head.

        Keras' default (the mean over the labels) gives a 21-label head the weight of a single
        binary flag in the shared layers' gradient; in a multi-output model such a head then
        learns several times slower than alone (bench part 5: genre macro AUC 0.66 against 0.78).
        """
        import tf_keras as keras

        labels = self.num_units(head, info)

        def summed_binary_crossentropy(y_true, y_pred):
            return labels * keras.losses.binary_crossentropy(y_true, y_pred)

        return summed_binary_crossentropy

    def metric(self, name, head, info):
        import tf_keras as keras

        if name == "auc":
            return keras.metrics.AUC(
                multi_label=True, num_labels=self.num_units(head, info), name="auc"
            )
        return {"precision": keras.metrics.Precision, "recall": keras.metrics.Recall}[name](
            name=name
        )

    def serving_outputs(self, head, prediction, info):
        """Probabilities, and the labels over 0.5 as strings ('' where not predicted)."""
        names = tf.constant(self.class_names(head, info))
        chosen = tf.where(prediction > 0.5, names[None, :], tf.constant(""))
        return {head.name: prediction, f"{head.name}_labels": chosen}

    def transform_label(self, x, head, options):
        text, _ = dense_with_mask(x, "")
        values = split_values(text, options["delimiter"])
        if options["classes"]:
            ids = tf.ragged.map_flat_values(_class_index, values, options["classes"])
        else:
            vocab = tft.vocabulary(
                values, top_k=options["max_classes"], vocab_filename=label_name(head)
            )
            ids = tft.apply_vocabulary(values, vocab, default_value=-1)
        hot = tf.one_hot(ids.to_tensor(default_value=-1), self.depth(options))
        return tf.minimum(tf.reduce_sum(hot, axis=1), 1.0)


HEAD_TYPES: dict[str, HeadType] = {
    h.name: h for h in (Regression(), Binary(), Multiclass(), Multilabel())
}

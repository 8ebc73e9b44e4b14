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


class Regression(HeadType):
    name = "regression"
    losses = ("mse", "huber", "mae")
    metrics = ("mae", "rmse")
    schema_types = frozenset({INT, FLOAT})

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

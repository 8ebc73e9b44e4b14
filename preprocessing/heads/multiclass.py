"""Multiclass heads: one class of a list (softmax), declared or learnt from the training split."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from preprocessing.base import as_string, dense_with_mask
from preprocessing.heads.base import (
    HeadType,
    Metric,
    class_index,
    label_name,
    labels_outside_classes,
    unique_count,
)
from preprocessing.options import Choice, Integer, NameList, Nullable, Option, OptionError
from preprocessing.registry import HEAD_TYPES


def _accuracy(head, info):
    import tf_keras as keras

    return keras.metrics.SparseCategoricalAccuracy(name="accuracy", dtype="float32")


def _top_k(head, info):
    import tf_keras as keras

    k, classes = head.options["k"], MULTICLASS.num_units(head, info)
    if k >= classes:
        raise ValueError(
            f"output '{head.name}': top_k_accuracy with k={k} over {classes} classes is always "
            f"1.0; set `k` below {classes} or drop the metric"
        )
    return keras.metrics.SparseTopKCategoricalAccuracy(k=k, name="top_k_accuracy", dtype="float32")


def _majority_accuracy(y_train, y_eval):
    known = y_train[y_train >= 0]
    if not known.size:
        return 0.0
    y = y_eval[y_eval >= 0]
    return float((y == np.bincount(known).argmax()).mean()) if y.size else 0.0


class Multiclass(HeadType):
    name = "multiclass"
    doc = "one class of several (softmax); class_weights {class: w} weigh the loss"
    losses = ("sparse_categorical_crossentropy",)
    accepts_class_weights = True
    primary = "accuracy"
    activation = "softmax"
    options = {
        "classes": Option(
            None,
            "the class list, in output order; null: the training split's label vocabulary",
            Nullable(NameList(2, "class name")),
        ),
        "top_k": Option(1000, "without `classes`: keep the most frequent classes", Integer(2)),
        "k": Option(
            None,
            "top_k_accuracy's k (a hit when the label is among the k most probable classes); "
            "null: min(3, classes - 1), which needs `classes`",
            Nullable(Integer(1)),
        ),
        "unknown_labels": Option(
            "mask",
            "a label outside `classes`: mask (weighs 0 for this head; the data gate warns with "
            "the values and counts) or error (the data gate stops the run)",
            Choice(("mask", "error")),
        ),
    }
    metric_table = {
        "accuracy": Metric(
            "accuracy",
            _accuracy,
            "SparseCategoricalAccuracy",
            "sparse_categorical_accuracy",
            True,
            trivial=_majority_accuracy,
        ),
        "top_k_accuracy": Metric(
            "top_k_accuracy",
            _top_k,
            "SparseTopKCategoricalAccuracy",
            "sparse_top_k_categorical_accuracy",
            True,
            # Keras and TFMA count a hit among the same k classes.
            tfma_config=lambda head: {"k": head.options["k"]},
        ),
    }
    tfma_extras = ("ExampleCount", "MultiClassConfusionMatrixPlot")
    report_plots = ("confusion",)

    def resolve(self, given):
        options, errors = super().resolve(given)
        if not errors and options["classes"] and options["k"] is None:
            options["k"] = min(3, len(options["classes"]) - 1)
        return options, errors

    def validate(self, options):
        classes, k = options["classes"], options["k"]
        if classes and k is not None and k >= len(classes):
            return [
                OptionError(
                    "k",
                    f"top_k_accuracy with k={k} over {len(classes)} classes is always 1.0; "
                    f"choose k below {len(classes)}",
                )
            ]
        return []

    def default_metrics(self, options):
        if options["k"] is None:
            return ("accuracy",)
        return tuple(self.metric_table)

    def metric_problem(self, metric, options):
        if metric == "top_k_accuracy" and options["k"] is None:
            return (
                "top_k_accuracy needs `k` when the head has no `classes` (the class count "
                "is not known before Transform)"
            )
        return None

    def class_names(self, head, info) -> list[str]:
        if head.options["classes"]:
            return [str(c) for c in head.options["classes"]]
        return [v.decode() for v in info.vocabulary(label_name(head.name))]

    def transform_label(self, x, head):
        """The class index; a missing label, or a class outside the declared `classes` (or
        never seen in training), is -1 and not present."""
        values, present = dense_with_mask(x, "" if x.dtype == tf.string else 0)
        values = as_string(values)
        if head.options["classes"]:
            index = class_index(values, head.options["classes"])
        else:
            vocab = tft.vocabulary(
                tf.boolean_mask(values, present),
                top_k=head.options["top_k"],
                vocab_filename=label_name(head.name),
            )
            index = tft.apply_vocabulary(values, vocab, default_value=-1)
        index = tf.where(present, index, tf.constant(-1, tf.int64))
        return index, index >= 0

    def label_notes(self, head, column_type, column_stats):
        if head.options["unknown_labels"] != "mask":
            return []
        return [
            f"{line}; they weigh 0 for this head (unknown_labels: error stops the run instead)"
            for line in labels_outside_classes(head, column_stats)
        ]

    def label_checks(self, head, column_type, column_stats):
        if head.options["unknown_labels"] == "error":
            problems = [
                f"{line}; add them to `classes`, fix the rows, or set unknown_labels: mask"
                for line in labels_outside_classes(head, column_stats)
            ]
            if problems:
                return problems
        k, unique = head.options["k"], unique_count(column_stats)
        if head.options["classes"] or k is None or unique is None:
            return []
        if k >= min(unique, head.options["top_k"]):
            return [
                f"column {head.column!r} (output '{head.name}') holds {unique} distinct "
                f"label(s): top_k_accuracy with k={k} would always be 1.0; choose k below "
                f"{min(unique, head.options['top_k'])}"
            ]
        return []

    def label_stats(self, y, head, info):
        if not y.size:
            return {}
        units = self.num_units(head, info)
        known = y[(y >= 0) & (y < units)]
        counts = np.bincount(known, minlength=units).astype(np.float64)
        return {"prior": np.clip((counts + 1) / (counts.sum() + units), 1e-4, 1)}

    def num_units(self, head, info):
        return len(self.class_names(head, info))

    def keras_loss(self, head, info):
        import tf_keras as keras

        return keras.losses.SparseCategoricalCrossentropy()

    def keras_label(self, label):
        return tf.maximum(label, 0)  # -1 (a class unseen in training) weighs 0, see label_weight

    def tree_output(self, predictions, head, info):
        """Probabilities per class index; a class the trees never saw gets 0."""
        (p,) = predictions
        values = tf.convert_to_tensor(p["values"], tf.float32)
        values = tf.reshape(values, [tf.shape(values)[0], -1])
        if len(p["classes"]) == 2:  # YDF gives a binary model the second class's probability
            values = tf.concat([1 - values, values], axis=1)
        column = {int(c): j for j, c in enumerate(p["classes"])}
        zeros = tf.zeros_like(values[:, 0])
        return tf.stack(
            [
                values[:, column[k]] if k in column else zeros
                for k in range(self.num_units(head, info))
            ],
            axis=1,
        )

    def label_weight(self, label, head, info):
        known = tf.cast(label >= 0, tf.float32)
        if not head.class_weights:
            return known
        names = self.class_names(head, info)
        weights = tf.constant([head.class_weights.get(c, 1.0) for c in names], tf.float32)
        return known * tf.gather(weights, tf.maximum(label, 0))

    def monitored_values(self, head, outputs):
        """The most probable class's name: prediction drift compares class frequencies."""
        return [[c] for c in np.asarray(outputs[f"{head.name}_class"]).reshape(-1)]

    def serving_outputs(self, head, prediction, info):
        names = tf.constant(self.class_names(head, info))
        return {
            head.name: prediction,
            f"{head.name}_class": tf.gather(names, tf.argmax(prediction, axis=-1)),
        }

    def trivial_loss(self, y_train, y_eval):
        known = y_train[y_train >= 0]
        counts = np.bincount(known, minlength=int(known.max()) + 1 if known.size else 1)
        prior = np.clip(counts / max(counts.sum(), 1), 1e-7, 1)
        y = y_eval[y_eval >= 0]
        return float(-np.log(prior[np.minimum(y, len(prior) - 1)]).mean())


MULTICLASS = HEAD_TYPES.register(Multiclass())

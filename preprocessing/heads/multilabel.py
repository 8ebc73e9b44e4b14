"""Multilabel heads: a set of labels (a sigmoid per label), e.g. a film's genres."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from preprocessing.base import BYTES, dense_with_mask
from preprocessing.heads.base import (
    HeadType,
    Metric,
    class_index,
    clipped_prior,
    exact_auc,
    keras_metric,
    label_name,
    labels_outside_classes,
    prior_log_loss,
)
from preprocessing.modalities.multi_value import split_values
from preprocessing.options import (
    Choice,
    Integer,
    NameList,
    Nullable,
    Option,
    OptionError,
    String,
)
from preprocessing.registry import HEAD_TYPES

# Computed for every label at once by TFMA metrics of our own, with the same names and sub-keys
# as TFMA's AUC, Precision and Recall binarized per class.
TFMA_MODULE = "pipeline.evaluation.multilabel_metrics"


def _constant_auc(y_eval) -> float:
    """What Keras' multi-label AUC gives a constant predictor: 0.5 for a label with positives and
    negatives in the eval split, 0 for a label with only one of them; averaged over labels."""
    if not y_eval.size:
        return 0.0
    positives = y_eval.sum(axis=0)
    both = (positives > 0) & (positives < y_eval.shape[0])
    return float(0.5 * both.mean())


def _auc(head, info):
    import tf_keras as keras

    return keras.metrics.AUC(
        multi_label=True, num_labels=MULTILABEL.depth(head.options), name="auc", dtype="float32"
    )


class Multilabel(HeadType):
    name = "multilabel"
    doc = "a set of labels (a sigmoid each); gates judge the macro average over the labels"
    losses = ("binary_crossentropy",)
    schema_types = frozenset({BYTES})
    primary = "auc"
    activation = "sigmoid"
    options = {
        "delimiter": Option(",", "what separates the labels in a cell", String()),
        "classes": Option(
            None, "the label set, in output order", Nullable(NameList(2, "class name"))
        ),
        "max_classes": Option(
            None,
            "without `classes`: the size of the vector (the most frequent training labels)",
            Nullable(Integer(2)),
        ),
        "unknown_labels": Option(
            "ignore",
            "a label outside `classes`: ignore (the row keeps its other labels; the data gate "
            "warns with the values and counts) or error (the data gate stops the run)",
            Choice(("ignore", "error")),
        ),
    }
    metric_table = {
        "auc": Metric(
            "auc",
            _auc,
            "MultilabelAUC",
            "auc",
            True,
            trivial=lambda y_train, y_eval: _constant_auc(y_eval),
            tfma_module=TFMA_MODULE,
            # the macro average over the labels with both classes among the examples
            score=lambda y, p: float(
                np.mean(
                    [
                        exact_auc(y[:, j], p[:, j])
                        for j in range(y.shape[1])
                        if 0 < y[:, j].sum() < len(y)
                    ]
                    or [0.5]
                )
            ),
        ),
        "precision": Metric(
            "precision",
            keras_metric("Precision", "precision"),
            "MultilabelPrecision",
            "precision",
            True,
            tfma_module=TFMA_MODULE,
        ),
        "recall": Metric(
            "recall",
            keras_metric("Recall", "recall"),
            "MultilabelRecall",
            "recall",
            True,
            tfma_module=TFMA_MODULE,
        ),
    }

    def validate(self, options):
        if options["classes"] is None and options["max_classes"] is None:
            return [
                OptionError(
                    "classes",
                    "a multilabel head needs `classes` (the label set) or `max_classes` "
                    "(the size of its vector: the most frequent labels)",
                )
            ]
        return []

    def depth(self, options) -> int:
        return len(options["classes"]) if options["classes"] else options["max_classes"]

    def class_names(self, head, info) -> list[str]:
        if head.options["classes"]:
            return [str(c) for c in head.options["classes"]]
        names = [v.decode() for v in info.vocabulary(label_name(head.name))]
        return names + [f"<unused {i}>" for i in range(len(names), self.depth(head.options))]

    def transform_label(self, x, head):
        """Multi-hot over the classes; a missing cell is a missing label (not the empty set)."""
        options = head.options
        text, present = dense_with_mask(x, "")
        values = split_values(text, options["delimiter"])
        if options["classes"]:
            ids = tf.ragged.map_flat_values(class_index, values, options["classes"])
        else:
            vocab = tft.vocabulary(
                values, top_k=options["max_classes"], vocab_filename=label_name(head.name)
            )
            ids = tft.apply_vocabulary(values, vocab, default_value=-1)
        hot = tf.one_hot(ids.to_tensor(default_value=-1), self.depth(options))
        return tf.minimum(tf.reduce_sum(hot, axis=1), 1.0), present

    def label_stats(self, y, head, info):
        return {"prior": clipped_prior(y)} if y.size else {}

    def _outside(self, head, column_stats) -> list[str]:
        delimiter = head.options["delimiter"]
        return labels_outside_classes(
            head, column_stats, lambda cell: [v.strip() for v in cell.split(delimiter) if v.strip()]
        )

    def label_notes(self, head, column_type, column_stats):
        if head.options["unknown_labels"] != "ignore":
            return []
        return [
            f"{line}; they are ignored, each row keeps its other labels (unknown_labels: error "
            "stops the run instead)"
            for line in self._outside(head, column_stats)
        ]

    def label_checks(self, head, column_type, column_stats):
        if head.options["unknown_labels"] != "error":
            return []
        return [
            f"{line}; add them to `classes`, fix the rows, or set unknown_labels: ignore"
            for line in self._outside(head, column_stats)
        ]

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

    def monitored_values(self, head, outputs):
        """The labels predicted (over 0.5): prediction drift compares label frequencies."""
        chosen = np.asarray(outputs[f"{head.name}_labels"])
        return [[v for v in row if v] for row in chosen.reshape(len(chosen), -1)]

    def serving_outputs(self, head, prediction, info):
        """Probabilities, and the labels over 0.5 as strings ('' where not predicted)."""
        names = tf.constant(self.class_names(head, info))
        chosen = tf.where(prediction > 0.5, names[None, :], tf.constant(""))
        return {head.name: prediction, f"{head.name}_labels": chosen}

    def trivial_loss(self, y_train, y_eval):
        return prior_log_loss(y_train, y_eval)  # summed over the labels, as the loss is

    def tree_labels(self, y):
        """One tree model per label (YDF has no multi-label task)."""
        return [y[:, j].astype(np.int64) for j in range(y.shape[1])]

    # -- evaluation: gates on the macro average over labels; every label's own value reported --
    report_plots = ("label_auc",)

    def summary_key(self, metric):
        return f"{self.metric_table[metric].tfma_key}/macro"

    def tfma_metrics_specs(self, head, configs, extras):
        import tensorflow_model_analysis as tfma

        n = self.depth(head.options)
        macro = tfma.MetricsSpec(
            output_names=[head.name],
            metrics=configs,
            aggregate=tfma.AggregationOptions(
                macro_average=True, class_weights={i: 1.0 for i in range(n)}
            ),
        )
        per_label = tfma.MetricsSpec(
            output_names=[head.name],
            metrics=[tfma.MetricConfig(class_name=c.class_name, module=c.module) for c in configs]
            + extras,
            binarize=tfma.BinarizationOptions(class_ids={"values": list(range(n))}),
        )
        return [macro, per_label]


MULTILABEL = HEAD_TYPES.register(Multilabel())

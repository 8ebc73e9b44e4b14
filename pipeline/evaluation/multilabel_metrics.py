"""TFMA metrics for a multilabel head that update every label at once.

TFMA's own AUC, Precision and Recall binarize a multilabel output one class at a time: each class
becomes its own chain of computations with its own per-example Python work, for every slice and
both models (`make bench`: 167 s against 48 s with these, for 3.5k movies with 21 genres). These
metrics read the head's whole label and prediction vectors per example and update every class
with a few NumPy operations. They answer the same sub-keys (`SubKey(class_id=i)`), so TFMA's
`binarize` (per-class values), macro-average aggregation, thresholds and baseline comparisons use
them unchanged, under the same metric names ("auc", "precision", "recall").

AUC is the area under the ROC curve computed from per-class histograms of the predictions on the
logit scale (0.01 logit wide buckets over [-12, 12]); ties within a bucket count one half, as in
the Mann-Whitney statistic. Like TFMA's AUC, a class with no positive or no negative example in a
slice scores 0, and so does precision with nothing predicted; recall with no positive is NaN.
"""

from __future__ import annotations

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types, metric_util

LOGIT_LIMIT = 12.0
BUCKETS = 2400
THRESHOLD = 0.5  # precision and recall: a label is predicted when its probability is above this


def _buckets(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    logit = np.log(p) - np.log1p(-p)
    scaled = (logit + LOGIT_LIMIT) / (2 * LOGIT_LIMIT) * BUCKETS
    return np.clip(scaled.astype(np.int64), 0, BUCKETS - 1)


def roc_auc_from_histograms(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """[classes, buckets] positive and negative weights -> [classes] ROC AUC (0 if undefined)."""
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    below = np.cumsum(neg, axis=1) - neg  # negatives scored strictly lower
    wins = (pos * (below + 0.5 * neg)).sum(axis=1)
    defined = (n_pos > 0) & (n_neg > 0)
    return np.where(defined, wins / np.where(defined, n_pos * n_neg, 1.0), 0.0)


class _Accumulator:
    __slots__ = ("pos", "neg", "tp", "fp", "fn")

    def __init__(self, classes: int, histograms: bool):
        shape = (classes, BUCKETS) if histograms else (classes, 0)
        self.pos, self.neg = np.zeros(shape), np.zeros(shape)
        self.tp, self.fp, self.fn = np.zeros(classes), np.zeros(classes), np.zeros(classes)


class _PerLabelCombiner(beam.CombineFn):
    """Per class of one (model, output): histograms for AUC or counts at 0.5 for the others."""

    def __init__(self, kind, keys, class_ids, eval_config, model_name, output_name, weighted):
        self._kind = kind
        self._keys = keys
        self._class_ids = np.asarray(class_ids, dtype=np.int64)
        self._eval_config = eval_config
        self._model_name = model_name
        self._output_name = output_name
        self._weighted = weighted

    def create_accumulator(self) -> _Accumulator:
        return _Accumulator(len(self._class_ids), self._kind == "auc")

    def add_input(self, acc: _Accumulator, element) -> _Accumulator:
        for labels, predictions, weight in metric_util.to_label_prediction_example_weight(
            element,
            eval_config=self._eval_config,
            model_name=self._model_name,
            output_name=self._output_name,
            example_weighted=self._weighted,
            flatten=False,
            squeeze=False,
        ):
            predictions = np.asarray(predictions, dtype=np.float64)
            width = predictions.shape[-1] if predictions.ndim else 1
            if self._class_ids.max() >= width:
                raise ValueError(
                    f"{self._output_name}: class id {int(self._class_ids.max())} is beyond "
                    f"the prediction's {width} labels"
                )
            p = predictions.reshape(-1, width)[:, self._class_ids]
            y = np.asarray(labels, dtype=np.float64).reshape(-1, width)[:, self._class_ids]
            w = np.broadcast_to(np.asarray(weight, dtype=np.float64).reshape(-1, 1), y.shape)
            if self._kind == "auc":
                rows = np.broadcast_to(np.arange(len(self._class_ids)), y.shape)
                index = (rows, _buckets(p))
                np.add.at(acc.pos, index, y * w)
                np.add.at(acc.neg, index, (1 - y) * w)
            else:
                predicted = p > THRESHOLD
                acc.tp += (predicted * y * w).sum(axis=0)
                acc.fp += (predicted * (1 - y) * w).sum(axis=0)
                acc.fn += (~predicted * y * w).sum(axis=0)
        return acc

    def merge_accumulators(self, accumulators) -> _Accumulator:
        accumulators = iter(accumulators)
        result = next(accumulators)
        for acc in accumulators:
            for field in _Accumulator.__slots__:
                setattr(result, field, getattr(result, field) + getattr(acc, field))
        return result

    def extract_output(self, acc: _Accumulator) -> dict:
        if self._kind == "auc":
            values = roc_auc_from_histograms(acc.pos, acc.neg)
        else:
            # As TFMA's: precision 0 with nothing predicted, recall NaN with no positive.
            hits = acc.tp + (acc.fp if self._kind == "precision" else acc.fn)
            undefined = 0.0 if self._kind == "precision" else np.nan
            values = np.where(hits > 0, acc.tp / np.where(hits > 0, hits, 1.0), undefined)
        return {key: float(v) for key, v in zip(self._keys, values, strict=True)}


def _per_label_computations(
    kind: str,
    name: str,
    eval_config=None,
    model_names=None,
    output_names=None,
    sub_keys=None,
    example_weighted: bool = False,
) -> metric_types.MetricComputations:
    if not sub_keys or any(k is None or k.class_id is None for k in sub_keys):
        raise ValueError(
            f"{name}: a per-label metric needs class ids (the MetricsSpec's binarize.class_ids "
            "or aggregate.macro_average with class_weights)"
        )
    computations = []
    for model_name in model_names or [""]:
        for output_name in output_names or [""]:
            keys = [
                metric_types.MetricKey(
                    name=name,
                    model_name=model_name,
                    output_name=output_name,
                    sub_key=sub_key,
                    example_weighted=example_weighted,
                )
                for sub_key in sub_keys
            ]
            combiner = _PerLabelCombiner(
                kind,
                keys,
                [k.class_id for k in sub_keys],
                eval_config,
                model_name,
                output_name,
                example_weighted,
            )
            computations.append(metric_types.MetricComputation(keys, None, combiner))
    return computations


class _PerLabelMetric(metric_types.Metric):
    """One of the per-label metrics; `kind` selects what its combiner accumulates."""

    kind: str

    def __init__(self, name: str | None = None):
        # TFMA passes the create function these keyword arguments plus the ones it names
        # (eval_config, model_names, output_names, sub_keys, example_weighted).
        super().__init__(_per_label_computations, kind=self.kind, name=name or self.kind)

    def get_config(self) -> dict:
        return {"name": self.name}  # `kind` comes with the class (TFMA re-creates it by name)


class MultilabelAUC(_PerLabelMetric):
    """ROC AUC of each label of a multilabel output."""

    kind = "auc"


class MultilabelPrecision(_PerLabelMetric):
    """Precision at 0.5 of each label of a multilabel output."""

    kind = "precision"


class MultilabelRecall(_PerLabelMetric):
    """Recall at 0.5 of each label of a multilabel output."""

    kind = "recall"

"""The gradient-boosted baseline: per head, gradient-boosted trees (YDF, the engine of TensorFlow
Decision Forests) on the same transformed features and labels as the multi-output model.

It answers the question every user of a deep multi-output model asks first: does it beat one
boosted-trees model per target? Features come from the Transform output as the deep model sees
them, mapped to what trees take by dtype and shape alone, so every modality is covered without
code of its own: a float column (a scaled number, a missing flag, bag-of-values counts, image
pixels, flattened) is numerical; an int scalar (a category id) is categorical; an int vector
(name-list or token ids, 0 = padding) is a categorical *set*. Each head type says what its trees
predict (`tree_task`, `tree_labels`) and how their predictions become its output
(`tree_output`), so the head's own Keras metrics score trees and network alike. Early stopping
uses the validation split, as the network's does; the eval split scores both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from pipeline.spec import Spec
from preprocessing import HEAD_TYPES
from preprocessing.heads.base import label_name
from trainer.data import input_feature_names

# YDF's defaults, except: early stopping on the validation split picks the number of trees (up
# to 500); a name list's or text's categorical set keeps its 500 most frequent ids and a split
# tries 1% of them. Measured on movies' meter head (12k rows): every list at full vocabulary
# 262 s for cast alone; these settings 15.5 s for every input, validation RMSE 22.6 (22.4 with
# the full vocabularies at 28 s).
GBT_SETTINGS = {
    "num_trees": 500,
    "early_stopping": "LOSS_INCREASE",
    "max_vocab_count": 500,
    "categorical_set_split_greedy_sampling": 0.01,
}


def tree_features(arrays: dict, names: list[str]) -> dict:
    """{column: values YDF takes} from transformed arrays: floats -> numerical (flattened);
    an int id -> categorical (as text, so YDF never orders ids); int ids -> a set of ids."""
    out = {}
    for name in names:
        x = np.asarray(arrays[name])
        if x.dtype.kind == "f":
            flat = x.reshape(len(x), -1)
            if flat.shape[1] == 1:
                out[name] = flat[:, 0]
            else:
                for j in range(flat.shape[1]):
                    out[f"{name}.{j}"] = flat[:, j]
        elif x.reshape(len(x), -1).shape[1] == 1:
            out[name] = x.reshape(-1).astype(str)
        else:
            out[name] = [[str(v) for v in row if v != 0] for row in x.reshape(len(x), -1)]
    return out


def tree_features_tf(transformed: dict, names: list[str]) -> dict:
    """tree_features in TensorFlow, for the exported model: the same columns from a batch of
    transformed features (a set's ids as a ragged tensor of strings, padding 0 dropped)."""
    out = {}
    for name in names:
        x = transformed[name]
        width = int(np.prod(x.shape[1:]))
        flat = tf.reshape(x, [-1, width])
        if x.dtype.is_floating:
            flat = tf.cast(flat, tf.float32)
            if width == 1:
                out[name] = flat[:, 0]
            else:
                for j in range(width):
                    out[f"{name}.{j}"] = flat[:, j]
        elif width == 1:
            out[name] = tf.strings.as_string(flat[:, 0])
        else:
            ids = tf.ragged.boolean_mask(flat, tf.not_equal(flat, 0))
            out[name] = tf.ragged.map_flat_values(tf.strings.as_string, ids)
    return out


def _semantics(features: dict) -> list:
    import ydf

    columns = []
    for name, values in features.items():
        if isinstance(values, list):
            semantic = ydf.Semantic.CATEGORICAL_SET
        elif values.dtype.kind == "f":
            semantic = ydf.Semantic.NUMERICAL
        else:
            semantic = ydf.Semantic.CATEGORICAL
        columns.append(ydf.Feature(name, semantic))
    return columns


def _rows(features: dict, keep: np.ndarray) -> dict:
    return {
        k: [v[i] for i in np.flatnonzero(keep)] if isinstance(v, list) else v[keep]
        for k, v in features.items()
    }


@dataclass
class BoostedHeads:
    """One or more YDF models per head (a multilabel head has one per label)."""

    spec: Spec
    models: dict = field(default_factory=dict)  # head -> [ydf model, ...]
    seconds: dict = field(default_factory=dict)  # head -> training seconds

    def predict(self, arrays: dict, info) -> dict:
        """{head: predictions shaped as the deep model's output for that head}."""
        features = tree_features(arrays, input_feature_names(self.spec))
        out = {}
        for head in self.spec.outputs:
            head_type = HEAD_TYPES[head.type]
            raw = [_predict(model, features) for model in self.models[head.name]]
            out[head.name] = np.asarray(head_type.tree_output(raw, head, info))
        return out


@dataclass(frozen=True)
class OneClass:
    """Stands in for a classifier whose training rows hold one class only (a rare label absent
    from train): it predicts that class with certainty, as trees could not do better."""

    label: str


def _predict(model, features) -> dict:
    """{"values": probabilities (of the second class for binary models) or values, "classes":
    the model's label classes, None for regression}."""
    if isinstance(model, OneClass):
        rows = len(next(iter(features.values())))
        return {"values": np.ones(rows, np.float32), "classes": [model.label]}
    classes = None
    if model.task().name == "CLASSIFICATION":
        classes = list(model.label_classes())
    return {"values": np.asarray(model.predict(features)), "classes": classes}


def fit_boosted(spec: Spec, train: dict, validation: dict, seed: int = 1) -> BoostedHeads:
    """Per head, trees on the rows carrying its label (its `<head>_label_present` mask), early
    stopping on the validation split's labelled rows."""
    import ydf

    names = input_feature_names(spec)
    train_x, valid_x = tree_features(train, names), tree_features(validation, names)
    columns = _semantics(train_x)
    result = BoostedHeads(spec)
    for head in spec.outputs:
        head_type = HEAD_TYPES[head.type]
        start = time.perf_counter()
        keep_train = np.asarray(train[head.label_present]).reshape(-1) > 0.5
        keep_valid = np.asarray(validation[head.label_present]).reshape(-1) > 0.5
        ys_train = head_type.tree_labels(np.asarray(train[label_name(head.name)])[keep_train])
        ys_valid = head_type.tree_labels(np.asarray(validation[label_name(head.name)])[keep_valid])
        models = []
        for y_train, y_valid in zip(ys_train, ys_valid, strict=True):
            if head_type.tree_task == "CLASSIFICATION" and len(np.unique(y_train)) < 2:
                models.append(OneClass(str(y_train[0]) if len(y_train) else "0"))
                continue
            learner = ydf.GradientBoostedTreesLearner(
                label="__label__",
                task=getattr(ydf.Task, head_type.tree_task),
                features=columns,
                include_all_columns=False,
                random_seed=seed,
                **GBT_SETTINGS,
            )
            models.append(
                learner.train(
                    {**_rows(train_x, keep_train), "__label__": y_train},
                    valid={**_rows(valid_x, keep_valid), "__label__": y_valid},
                    verbose=0,
                )
            )
        result.models[head.name] = models
        result.seconds[head.name] = time.perf_counter() - start
    return result


def score(spec: Spec, info, predictions: dict, arrays: dict) -> dict:
    """{head: {metric: value}}: each head's own Keras metrics on the rows with its label, the
    way the training report scores the deep model."""

    out = {}
    for head in spec.outputs:
        head_type = HEAD_TYPES[head.type]
        label = head_type.keras_label(tf.constant(arrays[label_name(head.name)]))
        mask = tf.reshape(tf.constant(arrays[head.label_present], tf.float32), [-1])
        values = {}
        for metric in head_type.keras_metrics(head, info):
            metric.update_state(label, tf.constant(predictions[head.name]), sample_weight=mask)
            values[metric.name] = float(metric.result())
        out[head.name] = values
    return out


class TreeModel(tf.Module):
    """The boosted heads as the exporter calls a model: transformed features in, {head: the
    head's output as the network gives it} out, YDF's models running as TensorFlow ops (TF-DF's
    inference kernels), so the SavedModel serves and TFMA evaluates it like the network."""

    def __init__(self, boosted: BoostedHeads, info):
        super().__init__()
        self.spec, self.info = boosted.spec, info
        self.names = input_feature_names(boosted.spec)
        self.heads = {  # tracked: the YDF functions' resources are saved with the model
            head: [m if isinstance(m, OneClass) else m.to_tensorflow_function() for m in models]
            for head, models in boosted.models.items()
        }
        self.classes = {
            head: [
                [m.label] if isinstance(m, OneClass) else _classes(m) for m in boosted.models[head]
            ]
            for head in boosted.models
        }

    def __call__(self, transformed: dict, training: bool = False) -> dict:
        features = tree_features_tf(transformed, self.names)
        rows = tf.shape(transformed[self.names[0]])[0]
        out = {}
        for head in self.spec.outputs:
            raw = []
            for fn, classes in zip(self.heads[head.name], self.classes[head.name], strict=True):
                values = tf.ones([rows]) if isinstance(fn, OneClass) else _inline(fn)(features)
                raw.append({"values": values, "classes": classes})
            out[head.name] = HEAD_TYPES[head.type].tree_output(raw, head, self.info)
        return out


def _classes(model) -> list | None:
    return list(model.label_classes()) if model.task().name == "CLASSIFICATION" else None


def run_fn(fn_args) -> None:
    """The boosted baseline's Trainer (a second TFX Trainer, `BoostedTrainer`): per head trees on
    the transformed train split, early stopping on the validation split, exported with the
    network's signatures (trainer/export.py) so that the Evaluator compares the two per head and
    slice; its report (seconds per head, trees, validation metrics) beside it."""
    import json
    import os

    import tensorflow_transform as tft

    from pipeline.constants import TRAINING_REPORT_FILE
    from trainer.data import collect_labels, read_transformed
    from trainer.export import export
    from trainer.model import FeatureInfo

    spec = Spec.from_dict(fn_args.custom_config["spec"])
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    feature_spec = tft_output.transformed_feature_spec()
    train = read_transformed(fn_args.train_files, feature_spec)
    validation = read_transformed(fn_args.eval_files, feature_spec)
    info = FeatureInfo.from_transform_output(
        tft_output, collect_labels(fn_args.train_files, spec, feature_spec), spec
    )
    start = time.perf_counter()
    boosted = fit_boosted(spec, train, validation, seed=spec.training["seed"])
    seconds = time.perf_counter() - start
    export(
        TreeModel(boosted, info),
        tft_output,
        spec,
        info,
        fn_args.serving_model_dir,
        serving_raw=False,
    )
    validation_metrics = score(spec, info, boosted.predict(validation, info), validation)
    report = {
        "kind": "gbdt",
        "settings": GBT_SETTINGS,
        "seconds": round(seconds, 2),
        "seconds_per_head": {h: round(t, 2) for h, t in boosted.seconds.items()},
        "rows": {
            "train": len(train[spec.outputs[0].label_present]),
            "validation": len(validation[spec.outputs[0].label_present]),
        },
        "trees": {
            h: [0 if isinstance(m, OneClass) else m.num_trees() for m in models]
            for h, models in boosted.models.items()
        },
        "validation": validation_metrics,
    }
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, TRAINING_REPORT_FILE), "w") as f:
        json.dump(report, f, indent=2)
    print(
        f"[BoostedTrainer] gradient-boosted trees per head in {seconds:.1f} s: "
        + "; ".join(f"{h} {v}" for h, v in validation_metrics.items())
    )


def _inline(fn):
    """A YDF TensorFlow function's body, traced into the caller's graph: through its two nested
    tf.functions (each converted by AutoGraph) the fixture's export took 17 s, inlined 11 s."""
    return fn.call.python_function

"""What each head type owns: its metric table, its primary metric, its checks; and regression tests
for two bugs of the time when head types were spread over nine files."""

import os

import numpy as np
import pytest
import tensorflow_data_validation as tfdv
import yaml
from conftest import DIGITS_FIXTURE_SPEC, MOVIES_FIXTURE_SPEC

from components.data_gate import check_data
from pipeline.evaluation.eval_config import build_eval_config
from pipeline.spec import Spec, SpecError, load_spec
from preprocessing import HEAD_TYPES
from trainer.model import FeatureInfo

RATINGS = ["G", "PG", "R", "PG", "R", "G", "R", "PG", "G", "R"] * 3


def ratings_spec(tmp_path, **head):
    (tmp_path / "films.csv").write_text(
        "ID,Runtime,Rating\n" + "".join(f"{i},{90 + i},{r}\n" for i, r in enumerate(RATINGS))
    )
    raw = {
        "name": "ratings",
        "data": {"path": str(tmp_path / "films.csv")},
        "inputs": [{"name": "runtime", "column": "Runtime", "modality": "numeric"}],
        "outputs": [
            {
                "name": "rating",
                "column": "Rating",
                "type": "multiclass",
                "gates": [{"metric": "accuracy", "min": 0.1}],
                **head,
            }
        ],
    }
    return raw


def test_every_head_type_has_a_complete_metric_table():
    for name, head_type in HEAD_TYPES.items():
        assert head_type.primary in head_type.metric_table, name
        assert head_type.default_loss in head_type.losses
        for metric_name, metric in head_type.metric_table.items():
            assert metric.name == metric_name
            assert metric.tfma_class and metric.tfma_key
            assert isinstance(metric.higher_is_better, bool)
        assert head_type.higher_is_better("loss") is False


def test_top_k_accuracy_uses_the_same_k_in_keras_and_tfma(tmp_path):
    """Bug: without `classes`, TFMA got k=3 while Keras used the real class count; with three
    classes TFMA's top-k accuracy was always 1.0, so a gate on it could never fail."""
    raw = ratings_spec(tmp_path, classes=["G", "PG", "R"])
    spec = Spec.from_dict(raw)
    head = spec.outputs[0]
    assert head.options["k"] == 2 and head.metrics == ("accuracy", "top_k_accuracy")
    config = build_eval_config(spec)
    (top_k,) = [
        m
        for s in config.metrics_specs
        for m in s.metrics
        if m.class_name.endswith("TopKCategoricalAccuracy")
    ]
    assert top_k.config == '{"k": 2}'
    info = FeatureInfo(feature_spec={})
    keras_metric = head.head_type.metric_table["top_k_accuracy"].keras(head, info)
    assert keras_metric.get_config()["k"] == 2
    # Without `classes` the class count is unknown before Transform: no top-k unless k is given.
    raw = ratings_spec(tmp_path)
    spec = Spec.from_dict(raw)
    assert spec.outputs[0].metrics == ("accuracy",)
    raw["outputs"][0]["metrics"] = ["accuracy", "top_k_accuracy"]
    with pytest.raises(SpecError, match=r"outputs\[0\].metrics: top_k_accuracy needs `k`"):
        Spec.from_dict(raw)
    # A k that leaves nothing to miss is refused where it can be known.
    with pytest.raises(SpecError, match=r"outputs\[0\].k: top_k_accuracy with k=3 over 3"):
        Spec.from_dict(ratings_spec(tmp_path, classes=["G", "PG", "R"], k=3))
    raw["outputs"][0]["k"] = 3
    spec = Spec.from_dict(raw)
    frame = __import__("pandas").read_csv(tmp_path / "films.csv")
    stats = tfdv.generate_statistics_from_dataframe(frame)
    schema = tfdv.infer_schema(stats)
    errors, _ = check_data(spec, schema, {"train": stats.datasets[0]}, {})
    assert any("holds 3 distinct label(s): top_k_accuracy with k=3" in e for e in errors), errors
    # ... and at training time, where the class count comes from the label vocabulary.
    info = FeatureInfo(feature_spec={}, vocabularies={"rating_label": [b"G", b"PG", b"R"]})
    with pytest.raises(ValueError, match="k=3 over 3 classes is always 1.0"):
        spec.outputs[0].head_type.metric_table["top_k_accuracy"].keras(spec.outputs[0], info)


def test_primary_metric_of_every_head_type():
    """Bug: bench/run.py's PRIMARY had no multiclass entry (KeyError on 'auc'). `mimo compare`
    and the bench judge heads by it."""
    from trainer.compare import primary_metric

    digits = load_spec(DIGITS_FIXTURE_SPEC)
    assert primary_metric(digits.outputs[0]) == ("accuracy", "higher")
    movies = load_spec(MOVIES_FIXTURE_SPEC)
    assert [primary_metric(h) for h in movies.outputs] == [
        ("mae", "lower"),
        ("auc", "higher"),
        ("auc", "higher"),
    ]
    # Each primary metric is what the training report names (the spec's metric names).
    for head in (*digits.outputs, *movies.outputs):
        assert primary_metric(head)[0] in head.metrics


def test_trivial_baselines_per_head_type():
    y_train = np.array([0.0, 1.0, 1.0, 0.0])
    y_eval = np.array([1.0, 0.0, 0.0, 0.0])
    binary = HEAD_TYPES["binary"].trivial_baseline(y_train, y_eval)
    assert binary["auc"] == 0.5 and binary["pr_auc"] == 0.25 and binary["accuracy"] == 0.75
    assert binary["loss"] == pytest.approx(np.log(2))
    regression = HEAD_TYPES["regression"].trivial_baseline(np.array([1.0, 3.0]), np.array([4.0]))
    assert regression == {"mae": 2.0, "rmse": 2.0}
    multiclass = HEAD_TYPES["multiclass"].trivial_baseline(
        np.array([2, 2, 1, -1]), np.array([2, 1, 2, 2])
    )
    assert multiclass["accuracy"] == 0.75
    multilabel = HEAD_TYPES["multilabel"].trivial_baseline(
        np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([[1.0, 0.0], [0.0, 0.0]])
    )
    # The second label has no positive in the eval labels: Keras' AUC of it is 0 for any model.
    assert multilabel["auc"] == 0.25 and multilabel["loss"] > 0


def test_class_weights_only_where_the_head_type_takes_them(tmp_path):
    with open(MOVIES_FIXTURE_SPEC) as f:
        raw = yaml.safe_load(f)
    raw["data"]["path"] = os.path.join(os.path.dirname(MOVIES_FIXTURE_SPEC), "movies.csv")
    raw["outputs"][0]["class_weights"] = {0: 1.0}
    with pytest.raises(SpecError, match="a regression head takes no class weights"):
        Spec.from_dict(raw)


def test_label_presence_per_head_with_mask_and_drop(tmp_path):
    """`<head>_label_present`: a missing label, a NaN or a class outside `classes` masks its own
    head; a head with `missing_label: drop` masks every head where its label is missing."""
    import tensorflow as tf
    from tft_harness import run_transform

    raw = {
        "name": "partial",
        "data": {"path": "x.csv"},
        "inputs": [{"name": "x", "modality": "numeric"}],
        "outputs": [
            {"name": "score", "type": "regression"},
            {"name": "flag", "type": "binary", "missing_label": "drop"},
            {"name": "rating", "type": "multiclass", "classes": ["G", "PG", "R"]},
        ],
    }
    spec = Spec.from_dict(raw)
    assert spec.outputs[1].missing_label == "drop" and spec.outputs[0].missing_label == "mask"
    feature_spec = {
        "x": tf.io.FixedLenFeature([1], tf.float32),
        "score": tf.io.VarLenFeature(tf.float32),
        "flag": tf.io.VarLenFeature(tf.int64),
        "rating": tf.io.VarLenFeature(tf.string),
    }
    rows = [  # (score, flag, rating)
        ([1.5], [1], [b"G"]),
        ([], [0], [b"PG"]),  # no score
        ([float("nan")], [1], [b"R"]),  # a NaN score
        ([2.0], [], [b"R"]),  # no flag: dropped for every head
        ([3.0], [0], [b"NC-17"]),  # a rating outside the classes
        ([4.0], [1], []),  # no rating
    ]
    instances = [
        {"x": [float(i)], "score": s, "flag": f, "rating": r} for i, (s, f, r) in enumerate(rows)
    ]
    out, _ = run_transform(spec, instances, feature_spec, str(tmp_path))
    assert out["score_label_present"].tolist() == [1, 0, 0, 0, 1, 1]
    assert out["flag_label_present"].tolist() == [1, 1, 1, 0, 1, 1]
    assert out["rating_label_present"].tolist() == [1, 1, 1, 0, 0, 0]
    assert out["rating_label"].tolist() == [0, 1, 2, 2, -1, -1]
    assert np.isfinite(out["score_label"]).all()  # the NaN does not reach the loss
    with pytest.raises(SpecError, match=r"outputs\[0\].missing_label: must be one of"):
        Spec.from_dict({**raw, "outputs": [{**raw["outputs"][0], "missing_label": "skip"}]})


def test_exact_auc_counts_every_pair_and_ties_half():
    from preprocessing.heads.base import exact_auc

    # 4 positive-negative pairs: 3 ordered right (0.35 < 0.4 is the one wrong).
    assert exact_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert exact_auc(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.2, 0.9])) == 0.875
    assert exact_auc(np.array([1, 1]), np.array([0.2, 0.9])) == 0.5  # one class: undefined

"""A new modality and a new head type, each defined here alone (no edit anywhere else), go through
spec validation, the generated preprocessing_fn, the model builder and the EvalConfig builder."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from conftest import MOVIES_FIXTURE_CSV, read_csv_columns, tft_examples
from tft_harness import run_transform, write_transformed

from pipeline.evaluation.eval_config import build_eval_config
from pipeline.schema import options_markdown, spec_json_schema
from pipeline.spec import Spec, SpecError
from preprocessing import HEAD_TYPES, MODALITIES
from preprocessing.base import FLOAT, INT, Modality, dense_with_mask
from preprocessing.heads.base import HeadType, Metric
from preprocessing.options import Choice, Integer, Option
from trainer.data import collect_labels, make_dataset
from trainer.model import FeatureInfo, build_model, compile_model


class Sign(Modality):
    """A number reduced to its sign (or its bucket of `width`): an id and an embedding."""

    name = "toy_sign"
    doc = "a number's sign as an id"
    schema_types = frozenset({INT, FLOAT})
    options = {
        "width": Option(0, "0: the sign; else buckets of this width around the mean", Integer(0)),
        "dim": Option(3, "embedding size", Integer(1)),
    }

    def transform(self, x, item):
        values, present = dense_with_mask(x, 0)
        values = tf.cast(values, tf.float32) - tft.mean(tf.cast(values, tf.float32))
        ids = tf.cast(tf.sign(values), tf.int64) + 1  # 0, 1, 2
        return {item.name: tf.where(present, ids, tf.fill(tf.shape(ids), tf.constant(3, tf.int64)))}

    def tower(self, inputs, item, info):
        import tf_keras as keras

        from trainer.layers import Presence

        x = keras.layers.Embedding(4, item.options["dim"], name=f"{item.name}_emb")(
            inputs[item.name]
        )
        return x, Presence("all", name=f"{item.name}_present")(inputs[item.name])


def _mae(head, info):
    import tf_keras as keras

    return keras.metrics.MeanAbsoluteError(name="mae")


class Count(HeadType):
    """Counts: a Poisson loss on a log-rate output."""

    name = "toy_count"
    doc = "a count (Poisson)"
    losses = ("poisson",)
    schema_types = frozenset({INT})
    primary = "mae"
    metric_table = {
        "mae": Metric(
            "mae",
            _mae,
            "MeanAbsoluteError",
            "mean_absolute_error",
            higher_is_better=False,
            trivial=lambda y_train, y_eval: np.abs(y_eval - y_train.mean()).mean(),
        )
    }
    options = {"link": Option("exp", "how the output becomes a rate", Choice(("exp",)))}

    def transform_label(self, x, head):
        values, present = dense_with_mask(x, 0)
        return tf.cast(values, tf.float32), present

    def label_stats(self, y, head, info):
        return {"mean": float(y.mean())}

    def build_output(self, x, head, info):
        import tf_keras as keras

        start = keras.initializers.Constant(np.log(info.head_stats[head.name]["mean"]))
        return keras.layers.Dense(
            1, activation="exponential", bias_initializer=start, name=head.name
        )(x)

    def keras_label(self, label):
        return label[:, None]

    def keras_loss(self, head, info):
        import tf_keras as keras

        return keras.losses.Poisson()


@pytest.fixture
def toys():
    MODALITIES.register(Sign())
    HEAD_TYPES.register(Count())
    yield
    MODALITIES.unregister("toy_sign")
    HEAD_TYPES.unregister("toy_count")


def raw_spec():
    return {
        "name": "toys",
        "data": {"path": MOVIES_FIXTURE_CSV},
        "inputs": [
            {"name": "year", "column": "Year", "modality": "toy_sign", "dim": 4},
            {"name": "runtime", "column": "Runtime", "modality": "numeric"},
        ],
        "outputs": [
            {
                "name": "reviews",
                "column": "Reviews",
                "type": "toy_count",
                "gates": [{"metric": "mae", "max": 1000.0}],
            },
            {"name": "oscar", "column": "Oscars", "type": "binary"},
        ],
        "training": {"epochs": 1, "batch_size": 16},
    }


def test_a_toy_modality_and_head_type_run_through_every_builder(toys, tmp_path):
    spec = Spec.from_dict(raw_spec())
    assert spec.inputs[0].options == {"width": 0, "dim": 4}
    assert spec.outputs[0].loss == "poisson" and spec.outputs[0].metrics == ("mae",)
    # Their options are validated by their own declarations.
    bad = raw_spec()
    bad["inputs"][0]["dim"] = 0
    bad["outputs"][0]["loss"] = "mse"
    with pytest.raises(SpecError) as error:
        Spec.from_dict(bad)
    keys = {k for k, _ in error.value.problems}
    assert keys == {"inputs[0].dim", "outputs[0].loss"}
    # The preprocessing_fn, through tf.Transform's Beam implementation.
    rows, kinds = read_csv_columns(MOVIES_FIXTURE_CSV, 80)
    rows = [r for r in rows if r["Reviews"] and r["Runtime"]]
    instances, feature_spec = tft_examples(rows, kinds)
    transformed, tft_output = run_transform(spec, instances, feature_spec, str(tmp_path))
    assert set(np.unique(transformed["year"])) <= {0, 1, 2, 3}
    assert len(set(np.unique(transformed["year"]))) >= 2
    reviews = np.array([float(r["Reviews"]) for r in rows], np.float32)
    assert np.allclose(transformed["reviews_label"], reviews)
    # The model builder and one epoch of training.
    path = write_transformed(transformed, tft_output, str(tmp_path / "train.gz"))
    labels = collect_labels(path, spec, tft_output.transformed_feature_spec())
    info = FeatureInfo.from_transform_output(tft_output, labels, spec)
    assert info.head_stats["reviews"]["mean"] == pytest.approx(reviews.mean(), rel=1e-5)
    model = compile_model(build_model(spec, info), spec, info)
    assert {"year_emb", "reviews", "oscar"} <= {layer.name for layer in model.layers}
    history = model.fit(make_dataset(path, spec, info, 16), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert "reviews_mae" in history.history
    # The EvalConfig: the head type's TFMA metric and its gate.
    config = build_eval_config(spec)
    (reviews_spec,) = [s for s in config.metrics_specs if list(s.output_names) == ["reviews"]]
    (mae,) = [m for m in reviews_spec.metrics if m.class_name == "MeanAbsoluteError"]
    assert mae.per_slice_thresholds[0].threshold.value_threshold.upper_bound.value == 1000.0
    # Documented and in the JSON Schema, from the same declarations.
    assert "`width`" in options_markdown("toy_sign")
    outputs = spec_json_schema()["properties"]["outputs"]["items"]["oneOf"]
    assert any(o["properties"]["type"].get("const") == "toy_count" for o in outputs)


def test_unregistered_toys_are_unknown_again():
    with pytest.raises(SpecError, match="unknown modality 'toy_sign'"):
        Spec.from_dict(raw_spec())

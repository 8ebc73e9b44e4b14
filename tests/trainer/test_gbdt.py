"""The gradient-boosted baseline on the fixtures' real transformed examples: every modality's
features reach the trees with the right semantics, every head type gets predictions shaped as the
network's output and scored by its own metrics, and a head's missing labels never reach its trees.
"""

import dataclasses

import numpy as np
import pytest

from preprocessing import HEAD_TYPES
from trainer import gbdt
from trainer.data import read_transformed
from trainer.gbdt import TreeModel, fit_boosted, score, tree_features
from trainer.model import build_model, compile_model


def arrays(prepared):
    spec = prepared.info.feature_spec
    return read_transformed(prepared.train_files, spec), read_transformed(prepared.eval_files, spec)


def test_tree_features_by_dtype_and_shape(movies_prepared, digits_prepared):
    train, _ = arrays(movies_prepared)
    features = tree_features(train, ["year", "year_missing", "mpaa", "cast", "title"])
    assert features["year"].dtype == np.float32 and features["year"].shape == (150,)
    assert features["mpaa"].dtype.kind == "U"  # ids as categories, never ordered
    # Name lists and token ids: sets of the ids, padding (0) left out.
    for name in ("cast", "title"):
        assert len(features[name]) == 150
        expected = [[str(v) for v in row if v != 0] for row in train[name]]
        assert features[name] == expected
    assert any(features["cast"]) and not any("0" in row for row in features["cast"])
    digits, _ = arrays(digits_prepared)
    pixels = tree_features(digits, ["image"])
    assert len(pixels) == 16 * 16 and pixels["image.0"].shape == (90,)  # flattened, numerical


@pytest.mark.parametrize("which", ["movies", "digits"])
def test_boosted_heads_predict_like_the_network_and_learn(which, request):
    """Regression, binary and multilabel (movies), multiclass and binary (digits): predictions
    shaped as the network's outputs, scored by each head's Keras metrics; on the rows they were
    trained on, the trees beat each head's trivial predictor (a label or feature mix-up would
    not)."""
    p = request.getfixturevalue(f"{which}_prepared")
    train, valid = arrays(p)
    boosted = fit_boosted(p.spec, train, valid, seed=1)
    network = compile_model(build_model(p.spec, p.info), p.spec, p.info)
    shapes = {
        n: tuple(o.shape[1:]) for n, o in zip(network.output_names, network.outputs, strict=True)
    }
    predictions = boosted.predict(train, p.info)
    fitted = score(p.spec, p.info, predictions, train)
    for head in p.spec.outputs:
        head_type = HEAD_TYPES[head.type]
        assert predictions[head.name].shape == (
            150 if which == "movies" else 90,
            *shapes[head.name],
        )
        assert len(boosted.models[head.name]) == (21 if head.type == "multilabel" else 1)
        assert boosted.seconds[head.name] > 0
        labelled = train[head.label_present].reshape(-1) > 0.5
        y = train[f"{head.name}_label"][labelled]
        metric = head_type.primary
        trivial = head_type.trivial_baseline(y, y)[metric]
        value = fitted[head.name][metric]
        if head_type.higher_is_better(metric):
            assert value > trivial + 0.05, (head.name, metric, value, trivial)
        else:
            assert value < 0.9 * trivial, (head.name, metric, value, trivial)
    held_out = score(p.spec, p.info, boosted.predict(valid, p.info), valid)
    assert set(held_out) == {h.name for h in p.spec.outputs}
    if which == "digits":  # pixels carry the digit: the trees generalise
        assert held_out["digit"]["accuracy"] > 0.5


def test_a_head_s_missing_labels_never_reach_its_trees(movies_prepared):
    """Rows without a meter label: whatever value their label holds, the meter trees are the
    same."""
    train, valid = arrays(movies_prepared)
    spec = movies_prepared.spec
    spec = dataclasses.replace(spec, outputs=tuple(h for h in spec.outputs if h.name != "genre"))
    missing = np.arange(len(train["meter_label"])) % 3 == 0
    train["meter_label_present"] = np.where(missing, 0.0, 1.0).astype(np.float32)
    first = fit_boosted(spec, train, valid, seed=3).predict(valid, movies_prepared.info)
    train["meter_label"] = np.where(missing, 1000.0, train["meter_label"]).astype(np.float32)
    second = fit_boosted(spec, train, valid, seed=3).predict(valid, movies_prepared.info)
    np.testing.assert_array_equal(first["meter"], second["meter"])
    assert np.abs(second["meter"]).max() < 200  # the 1000s were never seen


def test_a_label_train_never_shows_gets_a_certain_prediction_not_a_crash(movies_prepared):
    """A rare genre with no film in train: YDF cannot train a classifier on one class; that
    label predicts its only class (0) with certainty, the other labels get trees."""
    train, valid = arrays(movies_prepared)
    spec = movies_prepared.spec
    spec = dataclasses.replace(spec, outputs=tuple(h for h in spec.outputs if h.name == "genre"))
    train["genre_label"][:, 0] = 0.0
    boosted = fit_boosted(spec, train, valid, seed=1)
    # The module's class as it is now: a pipeline run in this process (TFX's executor imports
    # `trainer.gbdt.run_fn` with importlib.reload) may have made a new OneClass class.
    one_class = gbdt.OneClass
    assert isinstance(boosted.models["genre"][0], one_class)
    assert not any(isinstance(m, one_class) for m in boosted.models["genre"][1:])
    predicted = boosted.predict(valid, movies_prepared.info)["genre"]
    assert predicted.shape == (len(valid["genre_label"]), 21)
    assert np.all(predicted[:, 0] == 0.0) and 0 < predicted[:, 1:].mean() < 1


@pytest.mark.parametrize("which", ["movies", "digits"])
def test_the_saved_boosted_model_predicts_what_the_trees_predict(which, request, tmp_path):
    """TreeModel (the BoostedTrainer's exported model): the trees as TensorFlow ops inside a
    SavedModel, fed the transformed features, answer what YDF answers in Python: regression, binary
    and multiclass heads (a multilabel head's models are binary ones, stacked by the same code);
    sets of ids, categories, numbers and pixels as features; multiclass columns by class."""
    import tensorflow as tf

    from trainer.data import input_feature_names

    p = request.getfixturevalue(f"{which}_prepared")
    train, valid = arrays(p)
    # Movies' genre (21 tree models, 20 s of tracing) is left to the pipeline test, where TFMA
    # evaluates the exported trees of every head.
    spec = dataclasses.replace(
        p.spec, outputs=tuple(h for h in p.spec.outputs if h.name != "genre")
    )
    boosted = fit_boosted(spec, train, valid, seed=1)
    names = input_feature_names(spec)
    module = tf.Module()
    module.trees = TreeModel(boosted, p.info)
    signature = {
        n: tf.TensorSpec([None, *valid[n].shape[1:]], tf.as_dtype(valid[n].dtype)) for n in names
    }
    module.serve = tf.function(lambda features: module.trees(features), input_signature=[signature])
    tf.saved_model.save(module, str(tmp_path / "trees"))
    loaded = tf.saved_model.load(str(tmp_path / "trees"))
    served = loaded.serve({n: tf.constant(valid[n]) for n in names})
    expected = boosted.predict(valid, p.info)
    for head in spec.outputs:
        np.testing.assert_allclose(served[head.name].numpy(), expected[head.name], atol=1e-5)
        assert served[head.name].shape[0] == len(valid[head.label_present])

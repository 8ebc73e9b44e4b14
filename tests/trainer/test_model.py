"""The model builder, the weighted losses, modality dropout and MirroredStrategy on 2 CPUs.

Everything runs on real transformed fixture data: the spec's preprocessing_fn through
tf.Transform's Beam implementation, written as the TFRecords the Trainer reads.
"""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from pipeline.spec import Spec, SpecError
from trainer.data import collect_labels, make_dataset, read_transformed
from trainer.model import build_model, compile_model
from trainer.train import train


@pytest.fixture
def movies(movies_prepared):
    return movies_prepared


@pytest.fixture
def digits(digits_prepared):
    return digits_prepared


def one_batch(p, spec=None, size=64):
    ds = make_dataset(p.train_files, spec or p.spec, p.info, size)
    return next(iter(ds))


def layer_names(model):
    return {layer.name for layer in model.layers}


def test_movies_model_has_a_tower_per_input_and_a_head_per_output(movies):
    model = build_model(movies.spec, movies.info)
    assert set(model.output_names) == {"meter", "oscar", "genre"}
    input_names = {i.name for i in model.inputs}
    for item in movies.spec.inputs:
        assert item.name in input_names
    assert {"year_missing", "runtime_missing", "reviews_missing"} <= input_names
    names = layer_names(model)
    for item in movies.spec.inputs:
        assert f"{item.name}_or_missing" in names  # every tower, with its missing path
    assert {"title_embedding", "title_pool"} <= names  # text: embedding + pooling encoder
    assert {"cast_embedding", "cast_bag"} <= names  # multi_value: embedding bag
    assert {"year_dense", "mpaa_embedding"} <= names  # numeric, categorical
    assert {"fusion", "trunk_0", "trunk_1"} <= names
    x, _, _ = one_batch(movies)
    out = model(x)
    n = x["year"].shape[0]
    assert out["meter"].shape == (n, 1) and out["oscar"].shape == (n, 1)
    assert out["genre"].shape == (n, 21)
    assert np.all((out["oscar"].numpy() >= 0) & (out["oscar"].numpy() <= 1))


def test_digits_model_has_an_image_tower(digits):
    model = build_model(digits.spec, digits.info)
    assert {
        "image_conv0",
        "image_pool0",
        "image_conv1",
        "image_flatten",
        "ink_dense",
    } <= layer_names(model)
    x, _, _ = one_batch(digits)
    out = model(x)
    assert x["image"].shape[1:] == (16, 16, 1)
    assert out["digit"].shape[1] == 10 and out["odd"].shape[1] == 1
    assert np.allclose(out["digit"].numpy().sum(axis=1), 1, atol=1e-5)


def test_text_encoders_and_gated_fusion_build(movies):
    raw = movies.spec.to_dict()
    raw["inputs"][0]["encoder"] = "conv1d"
    raw["model"]["fusion"] = "gated"
    spec = Spec.from_dict(raw)
    model = build_model(spec, movies.info)
    assert {"title_conv", "fusion"} <= layer_names(model)
    assert type(model.get_layer("fusion")).__name__ == "GatedFusion"
    raw["inputs"][0]["encoder"] = "lstm"
    model = build_model(Spec.from_dict(raw), movies.info)
    assert "title_lstm" in layer_names(model)
    x, _, _ = one_batch(movies)
    assert model(x)["genre"].shape[1] == 21


def test_average_fusion_is_the_mean_of_each_tower_s_projection(movies):
    """fusion: average: every tower projected to fusion_units (its own Dense, relu), averaged."""
    raw = movies.spec.to_dict()
    raw["model"].update(fusion="average", fusion_units=12)
    model = build_model(Spec.from_dict(raw), movies.info)
    fusion = model.get_layer("fusion")
    assert type(fusion).__name__ == "AverageFusion"
    x, _, _ = one_batch(movies)
    towers = tf_keras.Model(model.inputs, fusion.input)(x)
    fused = tf_keras.Model(model.inputs, fusion.output)(x).numpy()
    projected = [p(t).numpy() for p, t in zip(fusion.projections, towers, strict=True)]
    assert fused.shape[1] == 12 and len(projected) == len(movies.spec.inputs)
    np.testing.assert_allclose(fused, np.mean(projected, axis=0), atol=1e-5)


def test_a_routed_head_reads_only_its_inputs_through_a_branch_of_its_own(movies):
    """outputs[].inputs: oscar reads year and runtime only; changing the title or the cast
    changes genre's output (the shared trunk) and never oscar's; oscar's branch (its fusion and
    trunk) is its own, so stopping oscar freezes all of it."""
    from trainer.model import head_variables

    raw = movies.spec.to_dict()
    raw["outputs"][1]["inputs"] = ["year", "runtime"]
    spec = Spec.from_dict(raw)
    model = build_model(spec, movies.info)
    assert {"oscar_fusion", "oscar_trunk_0", "fusion", "trunk_0"} <= layer_names(model)
    x, _, _ = one_batch(movies)
    before = model(x)
    changed = dict(x, title=tf.zeros_like(x["title"]), cast=tf.zeros_like(x["cast"]))
    after = model(changed)
    np.testing.assert_array_equal(before["oscar"].numpy(), after["oscar"].numpy())
    assert not np.allclose(before["genre"].numpy(), after["genre"].numpy())
    own = {v.name.split("/")[0] for v in head_variables(model, "oscar")}
    assert {"oscar_trunk_0", "oscar_trunk_1", "oscar_hidden", "oscar"} <= own
    assert "trunk_0" not in own and "year_dense" not in own  # shared with the other heads
    raw["outputs"][1]["inputs"] = ["year", "nope"]
    with pytest.raises(SpecError, match=r"outputs\[1\].inputs: 'nope' is no input"):
        Spec.from_dict(raw)


def test_a_head_reads_another_head_s_output_without_training_it(movies):
    """outputs[].depends_on: oscar reads genre's probabilities; oscar's loss sends no gradient
    into genre's layers (unless `dependency_gradient: flow`), genre's layers stay genre's own
    (per-head stopping), and a cycle is refused with its path."""
    from trainer.model import head_variables

    raw = movies.spec.to_dict()
    raw["outputs"][1]["depends_on"] = ["genre"]
    spec = Spec.from_dict(raw)
    model = build_model(spec, movies.info)
    assert "oscar_reads_genre" in layer_names(model)
    genre_own = head_variables(model, "genre")
    assert {v.name.split("/")[0] for v in genre_own} >= {"genre_hidden", "genre"}
    assert not {id(v) for v in genre_own} & {id(v) for v in head_variables(model, "oscar")}
    x, _, _ = one_batch(movies)
    with tf.GradientTape() as tape:
        oscar = model(x)["oscar"]
        loss = tf.reduce_mean(oscar)
    grads = tape.gradient(loss, genre_own)
    assert all(g is None or not np.any(g.numpy()) for g in grads)
    # What genre predicts reaches oscar: oscar's hidden layer has genre's 21 extra inputs.
    width = model.get_layer("oscar_with_heads").output.shape[-1]
    assert width == model.get_layer("trunk_1").output.shape[-1] + 21
    # dependency_gradient: flow: oscar's loss trains genre's layers too (they stay genre's own).
    raw["outputs"][1]["dependency_gradient"] = "flow"
    flowing = build_model(Spec.from_dict(raw), movies.info)
    genre_own = head_variables(flowing, "genre")
    assert {v.name.split("/")[0] for v in genre_own} >= {"genre_hidden", "genre"}
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(flowing(x)["oscar"])
    assert all(np.any(g.numpy()) for g in tape.gradient(loss, genre_own))
    raw["outputs"][0]["depends_on"] = ["oscar"]
    raw["outputs"][1]["depends_on"] = ["meter"]
    with pytest.raises(SpecError, match="a dependency cycle: meter -> oscar -> meter"):
        Spec.from_dict(raw)


def with_heads(spec, **changes):
    outputs = tuple(dataclasses.replace(o, **changes.get(o.name, {})) for o in spec.outputs)
    return dataclasses.replace(spec, outputs=outputs)


def test_total_loss_is_the_weighted_sum_of_head_losses(movies):
    spec = with_heads(
        movies.spec,
        meter={"loss_weight": 0.5},
        oscar={"loss_weight": 2.0},
        genre={"loss_weight": 3.0},
    )
    model = compile_model(build_model(spec, movies.info), spec, movies.info)
    x, y, w = one_batch(movies, spec)
    result = model.test_on_batch(x, y, sample_weight=w, return_dict=True)
    expected = 0.5 * result["meter_loss"] + 2.0 * result["oscar_loss"] + 3.0 * result["genre_loss"]
    assert result["loss"] == pytest.approx(expected, rel=1e-5)
    assert result["meter_loss"] > 0 and result["oscar_loss"] > 0 and result["genre_loss"] > 0


def test_class_weights_weigh_the_weighted_class(movies):
    plain = with_heads(movies.spec, oscar={"class_weights": None})
    weighted = with_heads(movies.spec, oscar={"class_weights": {"0": 1.0, "1": 5.0}})
    model = compile_model(build_model(plain, movies.info), plain, movies.info)
    x, y, w_plain = one_batch(movies, plain, size=200)
    _, _, w_weighted = one_batch(movies, weighted, size=200)
    labels = y["oscar"].numpy()[:, 0]
    assert labels.sum() > 0, "the batch needs Oscar winners"
    assert np.all(w_plain["oscar"].numpy() == 1)
    assert np.array_equal(w_weighted["oscar"].numpy(), np.where(labels > 0.5, 5.0, 1.0))
    loss_plain = model.test_on_batch(x, y, sample_weight=w_plain, return_dict=True)["oscar_loss"]
    loss_weighted = model.test_on_batch(x, y, sample_weight=w_weighted, return_dict=True)[
        "oscar_loss"
    ]
    p = np.clip(model(x)["oscar"].numpy()[:, 0], 1e-7, 1 - 1e-7)
    bce = -(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    assert loss_plain == pytest.approx(bce.mean(), rel=1e-4)
    weights = np.where(labels > 0.5, 5.0, 1.0)
    assert loss_weighted == pytest.approx((weights * bce).mean(), rel=1e-4)
    assert loss_weighted > loss_plain


def test_multilabel_loss_is_summed_over_its_labels(movies):
    model = compile_model(build_model(movies.spec, movies.info), movies.spec, movies.info)
    x, y, w = one_batch(movies, size=100)
    labels = y["genre"].numpy()
    assert labels.shape[1] == 21 and labels.sum() > 0
    loss = model.test_on_batch(x, y, sample_weight=w, return_dict=True)["genre_loss"]
    p = np.clip(model(x)["genre"].numpy(), 1e-7, 1 - 1e-7)
    bce = -(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    # Per example the sum over the 21 labels (not their mean), then the mean over examples.
    assert loss == pytest.approx(bce.sum(axis=1).mean(), rel=1e-4)


def test_modality_dropout_at_one_takes_the_missing_path(movies):
    raw = movies.spec.to_dict()
    raw["model"].update(modality_dropout=1.0, dropout=0.0)
    spec = Spec.from_dict(raw)
    model = build_model(spec, movies.info)
    x, _, _ = one_batch(movies, spec)
    for item in spec.inputs:  # give each missing vector a distinct value
        layer = model.get_layer(f"{item.name}_or_missing")
        layer.missing.assign(tf.random.normal(layer.missing.shape))
    train_out = model(x, training=True)
    for head, value in train_out.items():
        v = value.numpy()
        assert np.allclose(v, v[:1], atol=1e-5), f"{head} still depends on the inputs"
    tower = model.get_layer("title_or_missing")
    probe = tf_keras.Model(model.inputs, tower.output)
    assert np.allclose(
        probe(x, training=True).numpy(),
        np.broadcast_to(tower.missing.numpy(), probe(x, training=True).shape),
    )
    served = model(x, training=False)["meter"].numpy()
    assert served.std() > 0  # at serving time the inputs count again


def test_mirrored_strategy_on_two_logical_cpus(movies, two_cpus):
    raw = movies.spec.to_dict()
    raw["training"].update(epochs=2, batch_size=16)
    spec = Spec.from_dict(raw)
    strategy = two_cpus
    result = train(
        spec,
        movies.tft_output,
        movies.train_files,
        movies.eval_files,
        strategy=strategy,
        train_steps=6,
    )
    assert result.report["replicas"] == 2
    assert result.report["global_batch_size"] == 32  # per-replica batch x replicas
    for key in ("loss", "val_loss", "meter_loss", "oscar_loss", "genre_loss"):
        assert np.all(np.isfinite(result.history[key])), key
    single = build_model(spec, result.info)
    x, _, _ = one_batch(movies, spec)
    mirrored_out, single_out = result.model(x), single(x)
    for head in ("meter", "oscar", "genre"):
        assert mirrored_out[head].shape == single_out[head].shape
        assert np.all(np.isfinite(mirrored_out[head].numpy()))
    assert set(result.report["heads"]) == {"meter", "oscar", "genre"}


def test_head_hidden_layer(movies):
    spec = with_heads(movies.spec, genre={"hidden_units": 16}, oscar={"hidden_units": 0})
    model = build_model(spec, movies.info)
    assert "genre_hidden" in layer_names(model)
    assert model.get_layer("genre_hidden").units == 16
    # The genre head reads its own hidden layer, which reads the trunk; the other heads the trunk.
    trunk = model.get_layer(f"trunk_dropout_{len(spec.model['trunk_units']) - 1}").output
    assert model.get_layer("genre").input is model.get_layer("genre_hidden").output
    assert model.get_layer("genre_hidden").input is trunk
    assert model.get_layer("oscar").input is trunk
    assert model.get_layer("meter_hidden").units == 32  # the default
    assert "oscar_hidden" not in layer_names(model)


def test_classifier_biases_start_at_the_training_prior(movies):
    model = build_model(movies.spec, movies.info)
    oscar_prior = movies.info.head_stats["oscar"]["prior"]
    bias = model.get_layer("oscar").bias.numpy()
    assert bias == pytest.approx(np.log(oscar_prior / (1 - oscar_prior)), rel=1e-5)
    genre_prior = movies.info.head_stats["genre"]["prior"]
    assert genre_prior.shape == (21,)
    assert np.allclose(
        model.get_layer("genre").bias.numpy(), np.log(genre_prior / (1 - genre_prior)), atol=1e-5
    )
    meter = movies.info.head_stats["meter"]
    mean, std = meter["mean"], meter["std"]
    assert 0 < mean < 100 and std > 1
    rescale = model.get_layer("meter")
    assert (rescale.mean, rescale.std) == (mean, std)


def test_single_head_spec_reports_its_metrics(movies):
    # With one head Keras names metrics without the head prefix ("mae", not "meter_mae").
    raw = movies.spec.to_dict()
    raw["outputs"] = [o for o in raw["outputs"] if o["name"] == "meter"]
    raw["training"].update(epochs=1, batch_size=32)
    spec = Spec.from_dict(raw)
    result = train(spec, movies.tft_output, movies.train_files, movies.eval_files)
    metrics = result.report["heads"]["meter"]["metrics"]
    assert set(metrics) == {"mae", "rmse", "loss"}
    assert metrics["mae"] > 0 and np.isfinite(metrics["rmse"])


def test_records_cached_in_memory_give_the_same_examples_reshuffled(movies):
    from trainer.data import should_cache

    assert should_cache(movies.train_files, "auto")  # a small split is cached
    assert not should_cache(movies.train_files, False)

    def meters(ds):
        return [float(v) for _, y, _ in ds for v in y["meter"].numpy().ravel()]

    plain = make_dataset(movies.train_files, movies.spec, movies.info, 16)
    cached = make_dataset(
        movies.train_files, movies.spec, movies.info, 16, shuffle=True, seed=1, cache=True
    )
    first, second = meters(cached), meters(cached)  # the second epoch reads the cache
    assert sorted(first) == sorted(second) == sorted(meters(plain))
    assert first != second  # still reshuffled every epoch


def test_a_masked_head_ignores_its_missing_labels_and_trains_the_others(movies, tmp_path):
    """Rows without a meter label weigh 0 for the meter head, whatever value their label holds,
    and still count for the oscar and genre heads."""
    from tft_harness import write_transformed as write

    feature_spec = movies.info.feature_spec
    data = read_transformed(movies.train_files, feature_spec)
    n = len(data["meter_label"])
    missing = np.arange(n) % 3 == 0  # a third of the rows lose their meter label
    data["meter_label_present"] = np.where(missing, 0.0, 1.0).astype(np.float32)
    a = write(data, movies.tft_output, str(tmp_path / "a.gz"))
    data["meter_label"] = np.where(missing, 1000.0, data["meter_label"]).astype(np.float32)
    b = write(data, movies.tft_output, str(tmp_path / "b.gz"))
    model = compile_model(build_model(movies.spec, movies.info), movies.spec, movies.info)

    def losses(path):
        x, y, w = next(iter(make_dataset(path, movies.spec, movies.info, n)))
        # The loss's weight: the mask over the head's labelled fraction in training.
        fraction = movies.info.labelled_fraction
        assert np.allclose(w["meter"].numpy(), data["meter_label_present"] / fraction["meter"])
        assert np.allclose(w["genre"].numpy(), data["genre_label_present"] / fraction["genre"])
        return model.test_on_batch(x, y, sample_weight=w, return_dict=True)

    first, second = losses(a), losses(b)
    assert first["meter_loss"] == pytest.approx(second["meter_loss"], rel=1e-6)
    assert first["meter_mae"] == pytest.approx(second["meter_mae"], rel=1e-6)
    assert first["oscar_loss"] == pytest.approx(second["oscar_loss"], rel=1e-6)
    # The same change on labelled rows does move the loss.
    data["meter_label_present"][:] = 1.0
    c = write(data, movies.tft_output, str(tmp_path / "c.gz"))
    model.reset_metrics()
    x, y, w = next(iter(make_dataset(c, movies.spec, movies.info, n)))
    third = model.test_on_batch(x, y, sample_weight=w, return_dict=True)
    assert third["meter_loss"] > 10 * first["meter_loss"]


def test_a_head_labelled_on_a_third_of_the_rows_keeps_its_loss_weight(movies, tmp_path):
    """Keras averages a head's weighted loss over the whole batch: the mask alone would shrink a
    head labelled on a third of the rows to a third of its loss_weight. Dividing by the labelled
    fraction makes its loss the mean over its labelled rows."""
    import dataclasses

    from tft_harness import write_transformed as write

    feature_spec = movies.info.feature_spec
    data = read_transformed(movies.train_files, feature_spec)
    n = len(data["meter_label"])
    data["meter_label_present"] = np.where(np.arange(n) % 3 == 0, 1.0, 0.0).astype(np.float32)
    path = write(data, movies.tft_output, str(tmp_path / "third.gz"))
    labels = collect_labels(path, movies.spec, feature_spec)
    assert labels.rows == n and labels.labelled_fraction()["meter"] == pytest.approx(1 / 3, 0.01)
    info = dataclasses.replace(movies.info, labelled_fraction=labels.labelled_fraction())
    model = compile_model(build_model(movies.spec, info), movies.spec, info)
    x, y, w = next(iter(make_dataset(path, movies.spec, info, n)))
    masked = model.test_on_batch(x, y, sample_weight=w, return_dict=True)["meter_loss"]
    # The same model's meter loss on the labelled rows alone (every weight 1).
    keep = data["meter_label_present"] > 0.5
    rows = {k: v[keep] for k, v in data.items()}
    alone = write(rows, movies.tft_output, str(tmp_path / "alone.gz"))
    x, y, w = next(iter(make_dataset(alone, movies.spec, movies.info, int(keep.sum()))))
    w = {**w, "meter": tf.ones_like(w["meter"])}
    model.reset_metrics()
    only = model.test_on_batch(x, y, sample_weight=w, return_dict=True)["meter_loss"]
    assert masked == pytest.approx(only, rel=0.02)

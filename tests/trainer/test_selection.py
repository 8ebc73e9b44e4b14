"""Per-head model selection and stopping, and the loss-balancing modes, under MirroredStrategy on
two logical CPUs, on real transformed fixture data (see conftest.movies_prepared)."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from conftest import MOVIES_FIXTURE_CSV, read_csv_columns, tft_examples
from tft_harness import serialize

from pipeline.spec import Spec
from trainer.averaging import AverageWeights, momentum
from trainer.balancing import BALANCERS, DynamicWeightAverage, Uncertainty, make_balancer
from trainer.data import make_dataset
from trainer.export import export, input_raw_spec
from trainer.model import build_model, compile_model
from trainer.selection import PerHeadSelection, selected
from trainer.train import train


@pytest.fixture
def movies(movies_prepared):
    return movies_prepared


def with_training(spec, **training):
    raw = spec.to_dict()
    raw["training"].update(training)
    return Spec.from_dict(raw)


def test_the_spec_offers_every_balancing_mode_there_is():
    from pipeline.spec import TRAINING_OPTIONS

    assert set(TRAINING_OPTIONS["loss_balancing"].check.choices) == set(BALANCERS)


class Scripted(tf_keras.callbacks.Callback):
    """Replaces each epoch's validation figure of some heads by a scripted curve (the heads'
    real figures on 50 validation rows are noise), so that which head stops when is known."""

    def __init__(self, curves):
        super().__init__()
        self.curves = curves

    def on_epoch_end(self, epoch, logs=None):
        for key, curve in self.curves.items():
            logs[key] = curve[epoch]


class Weights(tf_keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.at = []

    def on_epoch_end(self, epoch, logs=None):
        self.at.append(self.model.get_weights())


class TrainFunctions(tf_keras.callbacks.Callback):
    """The training step Keras calls in each epoch."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append(self.model.train_function)


def values(model, variables):
    index = {id(v): i for i, v in enumerate(model.weights)}
    return [index[id(v)] for v in variables]


def test_a_stopped_head_keeps_its_best_weights_and_sends_no_gradient(movies, two_cpus, tmp_path):
    spec = with_training(movies.spec, batch_size=16, early_stopping_patience=2)
    strategy = two_cpus
    train_ds = make_dataset(movies.train_files, spec, movies.info, 32, shuffle=True, seed=1)
    valid_ds = make_dataset(movies.eval_files, spec, movies.info, 32)
    tf_keras.utils.set_random_seed(1)
    with strategy.scope():
        model = compile_model(build_model(spec, movies.info), spec, movies.info)
        model.configure(
            spec, movies.info, make_balancer("static", {"meter": 1, "oscar": 1, "genre": 1})
        )
    # oscar peaks at epoch 2 and stops after epoch 4; meter and genre improve every epoch.
    script = Scripted(
        {
            "val_oscar_auc": [0.6, 0.7, 0.65, 0.66, 0.9, 0.9],
            "val_meter_mae": [30, 29, 28, 27, 26, 25],
            "val_genre_auc": [0.5, 0.6, 0.7, 0.8, 0.85, 0.9],
        }
    )
    weights, selection = Weights(), PerHeadSelection(spec, patience=2)
    functions = TrainFunctions()
    steps = sum(1 for _ in train_ds)
    model.fit(
        train_ds,
        validation_data=valid_ds,
        epochs=6,
        callbacks=[script, weights, selection, AverageWeights(steps), functions],  # as train()
        verbose=0,
    )

    assert selection.epochs() == {"meter": 6, "oscar": 2, "genre": 6}
    assert selection.stopped_at == {"oscar": 3}  # 0-based: after the 4th epoch
    assert model.stopped == {"oscar"}
    assert {h: float(v.numpy()) for h, v in model.head_active.items()} == {
        "meter": 1.0,
        "oscar": 0.0,
        "genre": 1.0,
    }
    # Stopping a head traced no new training step: one function for all six epochs.
    assert len(functions.seen) == 6 and all(f is functions.seen[0] for f in functions.seen)
    oscar = values(model, model.head_variables["oscar"])
    assert len(oscar) == 4  # its hidden and output layers' kernels and biases; nothing shared
    now = model.get_weights()
    for i in oscar:  # back to epoch 2's values at the stop, then never updated
        assert np.array_equal(now[i], weights.at[1][i])
        assert not np.array_equal(weights.at[3][i], weights.at[1][i])  # it had moved on
    trunk = values(model, model.get_layer("trunk_0").trainable_weights)
    assert not np.array_equal(now[trunk[0]], weights.at[3][trunk[0]])  # the others trained on

    # The stopped head's term weighs 0: its own layers get a zero gradient, and the shared layers'
    # gradient is the same whatever its labels say.
    x, y, w = next(iter(make_dataset(movies.train_files, spec, movies.info, 32)))
    flipped = dict(y, oscar=1.0 - y["oscar"])

    def gradients(labels):
        def step(x, labels, w):
            with tf.GradientTape() as tape:
                out = model(x, training=False)
                total, _ = model.objective(labels, out, w)
            shared = model.get_layer("trunk_0").trainable_weights
            own = model.head_variables["oscar"]
            return tape.gradient(total, [out["meter"], *own, *shared])

        per_replica = strategy.run(step, args=(x, labels, w))
        return [strategy.experimental_local_results(g) for g in per_replica]

    def largest(per_replica):
        return max(float(tf.reduce_max(tf.abs(g))) for g in per_replica)

    own = len(model.head_variables["oscar"])
    meter_out, *rest = gradients(y)
    oscar_own, shared = rest[:own], rest[own:]
    assert own == 4 and all(largest(g) == 0 for g in oscar_own)
    assert largest(meter_out) > 0
    shared_flipped = gradients(flipped)[1 + own :]
    for a, b in zip(shared, shared_flipped, strict=True):
        for ra, rb in zip(a, b, strict=True):
            assert np.array_equal(ra.numpy(), rb.numpy())

    # Served: oscar from epoch 2's network, meter and genre from epoch 6's.
    with strategy.scope():
        served = selected(model, selection, spec, movies.info, build_model)
    assert len({layer.name for layer in served.layers if "epoch" in layer.name}) == 2
    at = {}
    for epoch in (2, 6):
        alone = build_model(spec, movies.info)
        alone.set_weights(weights.at[epoch - 1])
        at[epoch] = alone(x, training=False)
    out = served(x, training=False)
    np.testing.assert_allclose(out["oscar"].numpy(), at[2]["oscar"].numpy(), rtol=1e-6)
    np.testing.assert_allclose(out["meter"].numpy(), at[6]["meter"].numpy(), rtol=1e-6)
    assert not np.allclose(at[2]["oscar"].numpy(), at[6]["oscar"].numpy())

    # Exported, the SavedModel serves raw examples with both epochs' networks.
    export(served, movies.tft_output, spec, movies.info, str(tmp_path / "model"))
    instances, feature_spec = tft_examples(*read_csv_columns(MOVIES_FIXTURE_CSV, 200))
    examples = tf.constant([serialize(i, feature_spec) for i in instances[:8]])
    loaded = tf.saved_model.load(str(tmp_path / "model"))
    out = loaded.signatures["serving_default"](examples=examples)
    transformed = movies.tft_output.transform_features_layer()(
        tf.io.parse_example(examples, input_raw_spec(movies.tft_output, spec))
    )
    for epoch, heads in ((2, ["oscar"]), (6, ["meter", "genre"])):
        alone = build_model(spec, movies.info)
        alone.set_weights(weights.at[epoch - 1])
        expected = alone({k: transformed[k] for k in alone.input}, training=False)
        for head in heads:
            np.testing.assert_allclose(
                out[head].numpy(), expected[head].numpy(), rtol=1e-5, atol=1e-6
            )


class Steps(tf_keras.callbacks.Callback):
    """The trainable weights at the start, at each epoch's start, after every training step, and
    at each epoch's end."""

    def __init__(self):
        super().__init__()
        self.begins, self.steps, self.ends = [], [], []

    def trainable(self):
        return [v.numpy().astype(np.float64) for v in self.model.trainable_variables]

    def on_train_begin(self, logs=None):
        self.start = self.trainable()

    def on_epoch_begin(self, epoch, logs=None):
        self.begins.append(self.trainable())
        self.steps.append([])

    def on_train_batch_end(self, batch, logs=None):
        self.steps[-1].append(self.trainable())

    def on_epoch_end(self, epoch, logs=None):
        self.ends.append(self.trainable())


def test_each_epoch_is_validated_on_the_moving_average_of_its_steps_on_two_replicas(
    movies, two_cpus
):
    spec = with_training(movies.spec, batch_size=16)
    train_ds = make_dataset(movies.train_files, spec, movies.info, 32, shuffle=True, seed=1)
    valid_ds = make_dataset(movies.eval_files, spec, movies.info, 32)
    steps = sum(1 for _ in train_ds)
    tf_keras.utils.set_random_seed(1)
    with two_cpus.scope():
        model = compile_model(build_model(spec, movies.info), spec, movies.info)
        model.configure(
            spec, movies.info, make_balancer("static", {"meter": 1, "oscar": 1, "genre": 1})
        )
    record, averaging = Steps(), AverageWeights(steps)
    history = model.fit(
        train_ds, validation_data=valid_ds, epochs=2, callbacks=[record, averaging], verbose=0
    )
    m = momentum(steps)
    assert averaging.momentum == m and 0.5 < m < 1
    average = record.start
    for epoch in range(2):
        assert len(record.steps[epoch]) == steps
        for weights in record.steps[epoch]:
            average = [m * a + (1 - m) * w for a, w in zip(average, weights, strict=True)]
        last = record.steps[epoch][-1]
        for a, end in zip(average, record.ends[epoch], strict=True):
            np.testing.assert_allclose(end, a, rtol=1e-4, atol=1e-6)  # validated: the average
        assert any(not np.allclose(a, w) for a, w in zip(average, last, strict=True))
    # Training goes on from its own weights, not from the average.
    for begin, last in zip(record.begins[1], record.steps[0][-1], strict=True):
        assert np.array_equal(begin, last)
    # The model left by fit is the last epoch's average, which validation measured.
    for v, a in zip(model.trainable_variables, average, strict=True):
        np.testing.assert_allclose(v.numpy(), a, rtol=1e-4, atol=1e-6)
    again = model.evaluate(valid_ds, return_dict=True, verbose=0)
    assert again["loss"] == pytest.approx(history.history["val_loss"][-1], rel=1e-5)


@pytest.mark.parametrize("balancing", ["uncertainty", "dwa", "famo"])
def test_each_balancing_mode_trains_with_per_head_selection_on_two_replicas(
    movies, balancing, two_cpus
):
    """`static` trains in every other test. FAMO (the one with a step of its own) also under
    mixed_float16: the Trainer sets that policy on GPUs only, here it is set by hand."""
    spec = with_training(
        movies.spec, epochs=2, batch_size=16, loss_balancing=balancing, selection="per_head"
    )
    tf_keras.utils.set_random_seed(1)
    if balancing == "famo":
        tf_keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        result = train(
            spec, movies.tft_output, movies.train_files, movies.eval_files, strategy=two_cpus
        )
    finally:
        tf_keras.mixed_precision.set_global_policy("float32")
    history = result.history
    assert result.report["replicas"] == 2 and result.report["loss_balancing"] == balancing
    assert set(result.report["best_epochs"]) == {"meter", "oscar", "genre"}
    assert all(1 <= e <= 2 for e in result.report["best_epochs"].values())
    for key in ("loss", "val_loss", "meter_loss", "oscar_loss", "genre_loss"):
        assert np.all(np.isfinite(history[key])), key
    balance = {h: np.array(history[f"{h}_balance"]) for h in ("meter", "oscar", "genre")}
    static = {h.name: h.loss_weight for h in spec.outputs}
    # The weights moved away from the static ones, and differ between heads.
    assert not np.allclose(balance["meter"] / static["meter"], balance["genre"] / static["genre"])
    if balancing == "famo":  # softmax weights (times the loss weights), learnt in float16 steps
        assert sum(balance[h][-1] / static[h] for h in balance) == pytest.approx(1.0, abs=1e-5)
        trunks = [x for x in result.model._flatten_layers() if x.name == "trunk_0"]
        assert trunks and all(x.compute_dtype == "float16" for x in trunks)
    for head in ("meter", "oscar", "genre"):
        assert np.isfinite(result.report["heads"][head]["metrics"]["loss"])


def test_uncertainty_weighs_each_loss_by_its_learned_variance():
    balancer = Uncertainty({"a": 1.0, "b": 2.0})
    balancer.log_var["a"].assign(np.log(4.0))
    total = balancer.combine({"a": tf.constant(8.0), "b": tf.constant(3.0)})
    assert float(total) == pytest.approx(8.0 / 4 + np.log(4.0) + 2.0 * 3.0)
    # A stopped head (0 in `active`) has no term, its variance's neither.
    stopped = {"a": tf.constant(0.0), "b": tf.constant(1.0)}
    total = balancer.combine({"a": tf.constant(8.0), "b": tf.constant(3.0)}, stopped)
    assert float(total) == pytest.approx(2.0 * 3.0)
    assert balancer.weights() == pytest.approx({"a": 0.25, "b": 2.0})


def test_dwa_weighs_up_the_head_whose_loss_falls_slowest():
    balancer = DynamicWeightAverage({"fast": 1.0, "slow": 1.0, "flat": 1.0})
    prefix = lambda h: f"{h}_"  # noqa: E731
    balancer.on_epoch_end({"fast_loss": 4.0, "slow_loss": 4.0, "flat_loss": 4.0}, prefix)
    assert balancer.weights() == {"fast": 1.0, "slow": 1.0, "flat": 1.0}  # one epoch: no ratio
    balancer.on_epoch_end({"fast_loss": 2.0, "slow_loss": 3.0, "flat_loss": 4.0}, prefix)
    w = balancer.weights()
    assert w["flat"] > w["slow"] > w["fast"]
    assert sum(w.values()) == pytest.approx(3.0)
    ratio = np.array([0.5, 0.75, 1.0])
    expected = 3 * np.exp(ratio / 2) / np.exp(ratio / 2).sum()
    assert [w["fast"], w["slow"], w["flat"]] == pytest.approx(expected.tolist())

"""Training: device choice, fit with early stopping, per-head metrics next to trivial baselines."""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
import tf_keras as keras

from pipeline.spec import Spec
from preprocessing import HEAD_TYPES
from trainer.averaging import AverageWeights
from trainer.balancing import make_balancer
from trainer.calibration import calibrate
from trainer.data import collect_labels, make_dataset, should_cache
from trainer.model import FeatureInfo, build_model, compile_model, model_summary
from trainer.selection import EpochLine, LogBalance, PerHeadSelection, selected

log = logging.getLogger(__name__)


def leave_tf_keras_to_itself() -> None:
    """AutoGraph rewrites, from their source, the Python functions a `tf.function` calls, except
    those of packages on its rule list (`tensorflow`, `numpy`, `keras`, ...). `tf_keras`, Keras 2
    from TF 2.16 on, is not on it, so every process rewrote tf_keras' training step, metrics and
    layers at its first trace: 22 of the 30 s of the first `fit` on the movies fixture (cProfile).
    tf_keras is the code the `keras` rule covered up to TF 2.15 and needs no rewriting; our own
    layers are still converted. Process-wide, idempotent."""
    from tensorflow.python.autograph.core import config

    if "DoNotConvert rule for tf_keras" not in {str(r) for r in config.CONVERSION_RULES}:
        config.CONVERSION_RULES = (config.DoNotConvert("tf_keras"), *config.CONVERSION_RULES)


leave_tf_keras_to_itself()  # before the first trace


def choose_strategy(devices: list[str] | None = None) -> tf.distribute.Strategy:
    """MirroredStrategy over the given devices, else over every visible GPU; else the CPU.

    One MirroredStrategy per device set and process: every new one numbers its collective
    reductions from the same keys, and TensorFlow's runtime then pairs a new model's reduction
    with an earlier one's (a shape mismatch abort as soon as two models of different sizes train
    in one process, as in `mimo compare`)."""
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    chosen = devices or gpus
    strategy = _mirrored(tuple(chosen)) if chosen else tf.distribute.get_strategy()
    log.warning(
        "Trainer: %s over %s",
        type(strategy).__name__,
        chosen or [d.name for d in tf.config.list_logical_devices("CPU")][:1],
    )
    return strategy


@functools.cache
def _mirrored(devices: tuple) -> tf.distribute.MirroredStrategy:
    return tf.distribute.MirroredStrategy(list(devices))


@dataclass
class TrainResult:
    model: keras.Model
    info: FeatureInfo
    history: dict
    report: dict


def train(
    spec: Spec,
    tft_output,
    train_files,
    validation_files,
    log_dir: str | None = None,
    strategy: tf.distribute.Strategy | None = None,
    train_steps: int | None = None,
    eval_steps: int | None = None,
) -> TrainResult:
    """Fits the spec's model on transformed examples, stopping early and selecting each head's
    epoch (or one epoch for all, see trainer/selection.py) on `validation_files`, never on the
    eval split: that one is the Evaluator's. `train_steps` None: whole epochs."""
    feature_spec = tft_output.transformed_feature_spec()
    train_labels = collect_labels(train_files, spec, feature_spec)
    info = FeatureInfo.from_transform_output(tft_output, train_labels, spec)
    strategy = strategy or choose_strategy()
    replicas = strategy.num_replicas_in_sync
    if spec.training["mixed_precision"] and tf.config.list_logical_devices("GPU"):
        keras.mixed_precision.set_global_policy("mixed_float16")
    global_batch = spec.training["batch_size"] * replicas
    epochs = spec.training["epochs"]
    steps_per_epoch = math.ceil(train_steps / epochs) if train_steps else None

    cache = spec.training["cache_in_memory"]
    train_ds = make_dataset(
        train_files,
        spec,
        info,
        global_batch,
        shuffle=True,
        repeat=steps_per_epoch is not None,
        seed=42,
        cache=should_cache(train_files, cache),
    )
    validation_ds = make_dataset(
        validation_files, spec, info, global_batch, cache=should_cache(validation_files, cache)
    )
    with strategy.scope():
        model = compile_model(build_model(spec, info), spec, info)
        balancer = make_balancer(
            spec.training["loss_balancing"],
            {h.name: h.loss_weight for h in spec.outputs},
            spec.training["learning_rate"],
        )
        model.configure(spec, info, balancer)

    patience = spec.training["early_stopping_patience"]
    callbacks = [LogBalance(spec, balancer), EpochLine(spec, epochs)]
    if spec.training["selection"] == "per_head":
        selection = PerHeadSelection(spec, patience)
    else:
        selection = keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=patience, restore_best_weights=True, verbose=1
        )
    callbacks.append(selection)
    if log_dir:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch"))
    averaging = None
    if spec.training["weight_averaging"]:
        steps = steps_per_epoch or math.ceil(train_labels.rows / global_batch)
        averaging = AverageWeights(steps)
        callbacks.append(averaging)  # last: after selection has set any weights
    started = time.time()
    history = model.fit(
        train_ds,
        validation_data=validation_ds,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        validation_steps=eval_steps,
        callbacks=callbacks,
        verbose=2,
    )
    seconds = time.time() - started
    summary = model_summary(model, spec)  # the trained network, before any per-head copies
    val_losses = history.history.get("val_loss", [])
    if isinstance(selection, PerHeadSelection):
        with strategy.scope():
            served = selected(model, selection, spec, info, build_model)
            if served is not model:
                compile_model(served, spec, info)
        model, best_epochs = served, selection.epochs()
    else:
        best = int(np.argmin(val_losses)) + 1 if val_losses else None
        best_epochs = {h.name: best for h in spec.outputs}
    keras.mixed_precision.set_global_policy("float32")
    # Heads with `calibration: temperature`: fitted on the validation split, set in the model.
    calibration = calibrate(model, spec, info, validation_files, global_batch)

    report = evaluate_with_baselines(
        model, spec, info, train_labels, validation_files, global_batch, eval_steps
    )
    report.update(
        strategy=type(strategy).__name__,
        replicas=replicas,
        global_batch_size=global_batch,
        selection=spec.training["selection"],
        loss_balancing=spec.training["loss_balancing"],
        epochs_run=len(val_losses),
        weight_averaging=round(averaging.momentum, 4) if averaging else None,
        best_epochs=best_epochs,
        seconds=round(seconds, 2),
        model=summary,
        **({"calibration": calibration} if calibration else {}),
    )
    return TrainResult(model, info, history.history, report)


def evaluate_with_baselines(model, spec, info, train_labels, files, batch, steps=None) -> dict:
    """Per-head metrics on the examples of `files` with that head's label (not weighted by class
    weights) and what a trivial predictor scores on them.

    Each head type says what its trivial predictor is (the training mean, the training prior,
    the most frequent class) and which direction of each metric is better.
    """
    dataset = make_dataset(files, spec, info, batch, weights="mask")
    results = model.evaluate(dataset, steps=steps, return_dict=True, verbose=0)
    labels = collect_labels(files, spec, info.feature_spec)
    heads = {}
    for h in spec.outputs:
        head_type = HEAD_TYPES[h.type]
        # Keras prefixes metric names with the head's name only when there are several heads.
        prefix = f"{h.name}_" if len(spec.outputs) > 1 else ""
        model_metrics = {m: float(results[prefix + m]) for m in h.metrics if prefix + m in results}
        model_metrics["loss"] = float(results.get(f"{h.name}_loss", results["loss"]))
        heads[h.name] = {
            "type": h.type,
            "train_examples": int(len(train_labels[h.name])),  # those with this head's label
            "examples": int(len(labels[h.name])),
            "metrics": model_metrics,
            "baseline": head_type.trivial_baseline(train_labels[h.name], labels[h.name]),
            "higher_is_better": {m: head_type.higher_is_better(m) for m in model_metrics},
        }
    return {
        "heads": heads,
        "loss": float(results["loss"]),
        "examples": max(len(v) for v in labels.values()),
    }

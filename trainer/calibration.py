"""Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks") of the heads
with `calibration: temperature`.

After training, each such head's logits on the validation split (the split that chose the epoch,
never the Evaluator's eval split) fit one temperature T minimising the head's log loss on its
labelled rows; the head's output layer (`TemperatureActivation`, trainer/layers.py) divides its
logits by T from then on, so the exported model serves calibrated probabilities and TFMA's
`Calibration` metric and calibration plot on the eval split judge them. The training report
keeps, per head, T and the validation log loss and expected calibration error (ECE, 10 equal-width
bins) before and after.
"""

from __future__ import annotations

import numpy as np

ECE_BINS = 10
LOG_T_RANGE = (np.log(0.05), np.log(20.0))


def scaled_probabilities(logits: np.ndarray, temperature: float, activation: str) -> np.ndarray:
    z = logits / temperature
    if activation == "softmax":
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)
    return 1.0 / (1.0 + np.exp(-z))


def log_loss(probs: np.ndarray, labels: np.ndarray, weights: np.ndarray, activation: str) -> float:
    """Weighted mean per example: -log p(true class) (softmax); summed binary cross-entropy over
    the labels (sigmoid; one label for a binary head)."""
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    if activation == "softmax":
        per_example = -np.log(p[np.arange(len(p)), labels.reshape(-1).astype(int)])
    else:
        y = labels.reshape(p.shape)
        per_example = -(y * np.log(p) + (1 - y) * np.log(1 - p)).sum(axis=1)
    return float((per_example * weights).sum() / max(weights.sum(), 1e-12))


def expected_calibration_error(
    probs: np.ndarray, labels: np.ndarray, weights: np.ndarray, activation: str
) -> float:
    """ECE over ECE_BINS equal-width bins of confidence: the top class's probability against its
    accuracy (softmax), or each label's probability against its frequency (sigmoid)."""
    if activation == "softmax":
        confidence = probs.max(axis=1)
        outcome = (probs.argmax(axis=1) == labels.reshape(-1)).astype(float)
        w = weights
    else:
        confidence = probs.reshape(-1)
        outcome = labels.reshape(probs.shape).reshape(-1).astype(float)
        w = np.repeat(weights, probs.shape[1])
    bins = np.minimum((confidence * ECE_BINS).astype(int), ECE_BINS - 1)
    total, ece = w.sum(), 0.0
    for b in range(ECE_BINS):
        in_bin = bins == b
        mass = w[in_bin].sum()
        if mass > 0:
            gap = np.average(confidence[in_bin], weights=w[in_bin]) - np.average(
                outcome[in_bin], weights=w[in_bin]
            )
            ece += mass / total * abs(gap)
    return float(ece)


def fit_temperature(
    logits: np.ndarray, labels: np.ndarray, weights: np.ndarray, activation: str
) -> float:
    """The temperature minimising the weighted log loss (golden-section search on log T; the loss
    is convex in 1/T)."""

    def loss(log_t):
        probs = scaled_probabilities(logits, float(np.exp(log_t)), activation)
        return log_loss(probs, labels, weights, activation)

    low, high = LOG_T_RANGE
    ratio = (np.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = loss(a), loss(b)
    for _ in range(60):
        if fa < fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = loss(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = loss(b)
    return float(np.exp((low + high) / 2))


def owner(model, head: str):
    """The network holding `head`'s logits and TemperatureActivation: `model` itself, or, in a
    model served from per-head epochs (trainer/selection.py), the epoch's copy the head reads."""
    from trainer.layers import TemperatureActivation

    layer = model.get_layer(head)
    if isinstance(layer, TemperatureActivation):
        return model
    return layer.input._keras_history.layer  # the copy of the network at the head's epoch


def temperature_layer(model, head: str):
    """`head`'s TemperatureActivation in `model` (in the copy of the network that `head` reads),
    or None when there is none: an uncalibrated head, or a model without layers (the boosted
    rival)."""
    from trainer.layers import TemperatureActivation

    if not hasattr(model, "get_layer"):
        return None
    try:
        layer = owner(model, head).get_layer(head)
    except (ValueError, AttributeError):
        return None
    return layer if isinstance(layer, TemperatureActivation) else None


def head_logits(model, spec, info, files, batch: int, heads: list) -> dict:
    """{head: (logits [N, K], labels, label mask [N])} over `files`."""
    import tf_keras as keras

    from trainer.data import make_dataset

    logit_models = {}
    for h in heads:
        net = owner(model, h.name)
        logit_models[h.name] = keras.Model(net.inputs, net.get_layer(f"{h.name}_logits").output)
    out = {h.name: ([], [], []) for h in heads}
    for x, y, w in make_dataset(files, spec, info, batch, weights="mask"):
        for h in heads:
            out[h.name][0].append(logit_models[h.name](x, training=False).numpy())
            out[h.name][1].append(np.asarray(y[h.name]))
            out[h.name][2].append(np.asarray(w[h.name]).reshape(-1))
    return {name: tuple(np.concatenate(parts) for parts in v) for name, v in out.items()}


def calibrate(model, spec, info, files, batch: int) -> dict:
    """Fits and sets each calibrated head's temperature on `files`; returns the report part."""
    from preprocessing import HEAD_TYPES

    heads = [h for h in spec.outputs if h.calibration == "temperature"]
    if not heads:
        return {}
    report = {}
    for name, (logits, labels, weights) in head_logits(
        model, spec, info, files, batch, heads
    ).items():
        head = next(h for h in heads if h.name == name)
        activation = HEAD_TYPES[head.type].activation
        if activation == "softmax":
            labels = labels.reshape(-1)
            weights = weights * (labels >= 0)  # a class unseen in training weighs 0
            labels = np.maximum(labels, 0)
        temperature = fit_temperature(logits, labels, weights, activation)
        before = scaled_probabilities(logits, 1.0, activation)
        after = scaled_probabilities(logits, temperature, activation)
        temperature_layer(model, name).temperature.assign(temperature)
        report[name] = {
            "temperature": round(temperature, 4),
            "log_loss_before": round(log_loss(before, labels, weights, activation), 5),
            "log_loss_after": round(log_loss(after, labels, weights, activation), 5),
            "ece_before": round(expected_calibration_error(before, labels, weights, activation), 5),
            "ece_after": round(expected_calibration_error(after, labels, weights, activation), 5),
            "examples": int((weights > 0).sum()),
        }
    return report

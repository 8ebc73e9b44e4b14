"""Small Keras layers shared by the modality towers, the fusion and the heads.

All are tf_keras layers (the one Keras of this product; see pipeline/env.py).
"""

import tensorflow as tf
import tf_keras as keras


class MaskedPooling(keras.layers.Layer):
    """[B, T, D] embeddings of ids (0 = padding) -> [B, D] mean, sum or max over real positions."""

    def __init__(self, mode="mean", **kwargs):
        super().__init__(**kwargs)
        self.mode = mode

    def call(self, embedded, ids):
        mask = tf.cast(ids > 0, embedded.dtype)[:, :, None]
        if self.mode == "max":
            low = tf.cast(-1e4, embedded.dtype)
            pooled = tf.reduce_max(embedded * mask + low * (1 - mask), axis=1)
            return pooled * tf.cast(tf.reduce_any(ids > 0, axis=1), embedded.dtype)[:, None]
        total = tf.reduce_sum(embedded * mask, axis=1)
        if self.mode == "sum":
            return total
        return total / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


class TemperatureActivation(keras.layers.Layer):
    """sigmoid or softmax of logits / temperature; the temperature is fitted after training on
    the validation split (trainer/calibration.py), 1 until then, never trained by the loss."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activation

    def build(self, input_shape):
        self.temperature = self.add_weight(
            name="temperature", shape=(), initializer="ones", trainable=False
        )
        super().build(input_shape)

    def call(self, logits):
        scaled = logits / self.temperature
        return tf.nn.softmax(scaled) if self.activation == "softmax" else tf.sigmoid(scaled)

    def uncalibrated(self, probabilities):
        """The probabilities at temperature 1 from this layer's outputs: the logits are T times
        their log-odds (sigmoid) or log-probabilities up to a constant (softmax). A saturated 0
        or 1 stays one (log 0 is -inf, and so is T times it)."""
        log_p = tf.math.log(probabilities)
        if self.activation == "softmax":
            return tf.nn.softmax(self.temperature * log_p)
        return tf.sigmoid(self.temperature * (log_p - tf.math.log1p(-probabilities)))

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}


class ReadsHead(keras.layers.Layer):
    """Another head's output as this head reads it (`depends_on`); with `stop_gradient` no
    gradient flows back into that head. Also where a head's own layers end (head_variables)."""

    def __init__(self, stop_gradient: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.stop_gradient = stop_gradient

    def call(self, x):
        return tf.stop_gradient(x) if self.stop_gradient else tf.identity(x)

    def get_config(self):
        return {**super().get_config(), "stop_gradient": self.stop_gradient}


class StepMask(keras.layers.Layer):
    """[B, T] float mask (1.0 at real steps) -> [B, T] bool, for a recurrent layer's `mask`."""

    def call(self, mask):
        return mask > 0


class CountFractions(keras.layers.Layer):
    """[B, V] counts -> fractions of the row's total (an embedding bag's mean, before Dense)."""

    def call(self, counts):
        return counts / tf.maximum(tf.reduce_sum(counts, axis=-1, keepdims=True), 1.0)


class Presence(keras.layers.Layer):
    """[B] bool: does the example carry this input at all (any id > 0, any pixel, flag == 0)."""

    def __init__(self, kind, **kwargs):
        super().__init__(**kwargs)
        self.kind = kind

    def call(self, x):
        if self.kind == "ids":
            return tf.reduce_any(x > 0, axis=-1)
        if self.kind == "nonzero":
            flat = tf.reshape(x, [tf.shape(x)[0], -1])
            return tf.reduce_any(tf.not_equal(flat, 0), axis=-1)
        if self.kind == "flag":  # a `<name>_missing` flag: present where it is 0
            return tf.equal(tf.reshape(x, [-1]), 0)
        return tf.ones([tf.shape(x)[0]], tf.bool)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind}


class MissingModality(keras.layers.Layer):
    """Replaces a tower's output by a learned "missing" vector where the input is absent.

    In training, with probability `rate`, a present input is treated as absent too (modality
    dropout), so the model learns to predict without it and the missing vector is trained.
    """

    def __init__(self, rate=0.0, **kwargs):
        super().__init__(**kwargs)
        self.rate = float(rate)

    def build(self, input_shape):
        dim = input_shape[0][-1]
        self.missing = self.add_weight(name="missing", shape=(dim,), initializer="zeros")
        super().build(input_shape)

    def call(self, inputs, training=None):
        x, present = inputs
        keep = tf.cast(present, tf.bool)
        if training is None:
            training = keras.backend.learning_phase()
        if self.rate > 0:
            dropped = tf.random.uniform(tf.shape(keep)) < self.rate
            keep = tf.logical_and(
                keep, tf.logical_not(tf.logical_and(tf.cast(training, tf.bool), dropped))
            )
        missing = tf.cast(self.missing, x.dtype)[None, :] + tf.zeros_like(x)
        return tf.where(keep[:, None], x, missing)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


class ProjectedFusion(keras.layers.Layer):
    """The fusions that first project each tower to `units` (its own Dense, relu)."""

    def __init__(self, units=64, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.projections = [
            keras.layers.Dense(self.units, activation="relu", name=f"project_{i}")
            for i in range(len(input_shape))
        ]
        super().build(input_shape)

    def project(self, towers) -> list:
        return [p(t) for p, t in zip(self.projections, towers, strict=True)]

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class GatedFusion(ProjectedFusion):
    """Projects each tower to `units`, scores it, and sums the towers weighted by a softmax gate.

    The gate is computed per example, so the model can lean on the modalities that are informative
    for that example (and away from absent ones).
    """

    def build(self, input_shape):
        self.score = keras.layers.Dense(1, name="gate_score")
        super().build(input_shape)

    def call(self, towers):
        projected = tf.stack(self.project(towers), axis=1)
        gate = tf.nn.softmax(self.score(projected), axis=1)  # [B, towers, 1]
        return tf.reduce_sum(gate * projected, axis=1)


class AverageFusion(ProjectedFusion):
    """Projects each tower to `units` and averages them: one representation of several inputs of
    one kind (sensors), each weighing the same."""

    def call(self, towers):
        projected = self.project(towers)
        return tf.add_n(projected) / float(len(projected))


class Rescale(keras.layers.Layer):
    """y = mean + std * x: a regression head predicts in label units while learning z-scores."""

    def __init__(self, mean=0.0, std=1.0, **kwargs):
        super().__init__(**kwargs)
        self.mean, self.std = float(mean), float(std)

    def call(self, x):
        return self.mean + self.std * x

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std}

"""Numeric inputs (int or float): imputed, flagged when missing, and scaled."""

import tensorflow as tf
import tensorflow_transform as tft

from preprocessing.base import FLOAT, INT, Modality, dense_with_mask
from preprocessing.options import BOOLEAN, Choice, Integer, Option
from preprocessing.registry import MODALITIES


class Numeric(Modality):
    name = "numeric"
    doc = "a number (int or float): scaled on the training split, missing values imputed"
    schema_types = frozenset({INT, FLOAT})
    csv_type = FLOAT  # a column of integers today may hold 181.5 tomorrow
    drift = "numbers"
    options = {
        "scaling": Option(
            "zscore",
            "zscore: (x - mean) / std; log: log1p(max(x, 0)) then z-score (counts, money); "
            "minmax: into [0, 1] on the training data",
            Choice(("zscore", "log", "minmax")),
        ),
        "missing_flag": Option(
            True,
            "also emit `<name>_missing` (1.0 where absent); the value is imputed with the mean",
            BOOLEAN,
        ),
        "units": Option(
            8, "the tower: one dense layer of this size over [value, flag]", Integer(1)
        ),
    }

    def output_names(self, item):
        return [item.name, f"{item.name}_missing"] if item.options["missing_flag"] else [item.name]

    def transform(self, x, item):
        name, options = item.name, item.options
        values, present = dense_with_mask(x, 0)
        values = tf.cast(values, tf.float32)
        if options["scaling"] == "log":
            values = tf.math.log1p(tf.maximum(values, 0.0))
        observed = tf.boolean_mask(values, present)
        if options["scaling"] == "minmax":
            low, high = tft.min(observed), tft.max(observed)
            span = tf.where(high > low, high - low, tf.ones_like(high))
            scaled = (values - low) / span
            fill = (tft.mean(observed) - low) / span
        else:
            mean, var = tft.mean(observed), tft.var(observed)
            std = tf.where(var > 0, tf.sqrt(var), tf.ones_like(var))
            scaled = (values - mean) / std
            fill = tf.zeros_like(mean)
        out = {name: tf.where(present, scaled, tf.fill(tf.shape(scaled), fill))}
        if options["missing_flag"]:
            out[f"{name}_missing"] = 1.0 - tf.cast(present, tf.float32)
        return out

    def tower(self, inputs, item, info):
        import tf_keras as keras

        from trainer.layers import Presence

        name, options = item.name, item.options
        parts = [keras.layers.Reshape((1,), name=f"{name}_value")(inputs[name])]
        present = Presence("all", name=f"{name}_present")(inputs[name])
        if options["missing_flag"]:
            flag = inputs[f"{name}_missing"]
            parts.append(keras.layers.Reshape((1,), name=f"{name}_flag")(flag))
            present = Presence("flag", name=f"{name}_present_flag")(flag)
        x = keras.layers.Concatenate(name=f"{name}_concat")(parts) if len(parts) > 1 else parts[0]
        x = keras.layers.Dense(options["units"], activation="relu", name=f"{name}_dense")(x)
        return x, present


MODALITIES.register(Numeric())

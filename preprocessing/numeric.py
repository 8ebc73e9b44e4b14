"""Numeric inputs (int or float): imputed, flagged when missing, and scaled."""

import tensorflow as tf
import tensorflow_transform as tft

from preprocessing.base import FLOAT, INT, Modality, check_choice, check_int, dense_with_mask


class Numeric(Modality):
    name = "numeric"
    schema_types = frozenset({INT, FLOAT})
    defaults = {
        # zscore: (x - mean) / std.  log: log1p(max(x, 0)) then z-score (for counts, money).
        # minmax: (x - min) / (max - min), in [0, 1] on the training data.
        "scaling": "zscore",
        # Emit `<name>_missing` (1.0 where the value was absent). The value itself is imputed
        # with the training mean, which is 0 after z-scoring.
        "missing_flag": True,
        "units": 8,  # the tower: one dense layer over [value, missing flag]
    }

    def validate(self, options):
        errors = check_choice(options, "scaling", {"zscore", "log", "minmax"})
        errors += check_choice(options, "missing_flag", {True, False})
        return errors + check_int(options, "units", 1)

    def output_names(self, name, options):
        return [name, f"{name}_missing"] if options["missing_flag"] else [name]

    def transform(self, x, name, options):
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

    def tower(self, inputs, name, options, info):
        import tf_keras as keras

        from trainer.layers import Presence

        parts = [keras.layers.Reshape((1,), name=f"{name}_value")(inputs[name])]
        present = Presence("all", name=f"{name}_present")(inputs[name])
        if options["missing_flag"]:
            flag = inputs[f"{name}_missing"]
            parts.append(keras.layers.Reshape((1,), name=f"{name}_flag")(flag))
            present = Presence("flag", name=f"{name}_present_flag")(flag)
        x = keras.layers.Concatenate(name=f"{name}_concat")(parts) if len(parts) > 1 else parts[0]
        x = keras.layers.Dense(options["units"], activation="relu", name=f"{name}_dense")(x)
        return x, present


MODALITY = Numeric()

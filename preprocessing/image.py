"""Images (PNG/JPEG bytes): decoded, resized to the declared height x width x channels, in [0, 1].

A missing or empty image becomes an all-zero image.
"""

import tensorflow as tf

from preprocessing.base import BYTES, Modality, check_choice, check_int, dense_with_mask


class Image(Modality):
    name = "image"
    schema_types = frozenset({BYTES})
    defaults = {
        "height": 32,
        "width": 32,
        "channels": 3,
        # The tower: one Conv2D + max-pool block per entry, then flatten (small maps) or global
        # average pooling, then a dense layer of `units`.
        "conv_filters": [16, 32],
        "units": 64,
    }

    def validate(self, options):
        return (
            check_int(options, "height", 1)
            + check_int(options, "width", 1)
            + check_choice(options, "channels", {1, 3})
            + check_int(options, "units", 1)
            + _check_filters(options)
        )

    def transform(self, x, name, options):
        data, _ = dense_with_mask(x, "")
        h, w, c = options["height"], options["width"], options["channels"]

        def decode(blob):
            def real():
                img = tf.io.decode_image(blob, channels=c, expand_animations=False)
                img = tf.image.resize(tf.cast(img, tf.float32), [h, w], antialias=True)
                return tf.clip_by_value(img / 255.0, 0.0, 1.0)

            return tf.cond(tf.strings.length(blob) > 0, real, lambda: tf.zeros([h, w, c]))

        images = tf.map_fn(decode, data, fn_output_signature=tf.TensorSpec([h, w, c], tf.float32))
        return {name: images}

    def tower(self, inputs, name, options, info):
        import tf_keras as keras

        from trainer.layers import Presence

        x = inputs[name]
        for i, filters in enumerate(options["conv_filters"]):
            x = keras.layers.Conv2D(
                filters, 3, padding="same", activation="relu", name=f"{name}_conv{i}"
            )(x)
            if min(x.shape[1], x.shape[2]) >= 2:
                x = keras.layers.MaxPooling2D(2, name=f"{name}_pool{i}")(x)
        # Small feature maps keep where things are (it matters for digits, icons, ...);
        # large ones are pooled so the dense layer stays small.
        if x.shape[1] * x.shape[2] * x.shape[3] <= 4096:
            x = keras.layers.Flatten(name=f"{name}_flatten")(x)
        else:
            x = keras.layers.GlobalAveragePooling2D(name=f"{name}_gap")(x)
        x = keras.layers.Dense(options["units"], activation="relu", name=f"{name}_dense")(x)
        return x, Presence("nonzero", name=f"{name}_present")(inputs[name])


def _check_filters(options):
    from preprocessing.base import OptionError

    filters = options["conv_filters"]
    if (
        not isinstance(filters, list)
        or not filters
        or not all(isinstance(f, int) and f > 0 for f in filters)
    ):
        return [OptionError("conv_filters", "must be a non-empty list of positive integers")]
    return []


MODALITY = Image()

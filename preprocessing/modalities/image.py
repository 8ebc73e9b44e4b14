"""Images (PNG/JPEG bytes): decoded, resized to the declared height x width x channels, in [0, 1].

A missing or empty image becomes an all-zero image.
"""

import tensorflow as tf

from preprocessing.base import BYTES, Modality, dense_with_mask
from preprocessing.options import Choice, Integer, IntegerList, Option
from preprocessing.registry import MODALITIES


class Image(Modality):
    name = "image"
    doc = "PNG/JPEG bytes: decoded, resized, scaled to [0, 1]; a small CNN"
    schema_types = frozenset({BYTES})
    csv_type = BYTES  # whatever the cells look like
    options = {
        "height": Option(32, "pixels after resizing", Integer(1)),
        "width": Option(32, "pixels after resizing", Integer(1)),
        "channels": Option(3, "1: grey, 3: RGB", Choice((1, 3))),
        "conv_filters": Option(
            [16, 32],
            "the tower: one Conv2D + max-pool block per entry (then flatten or global pooling)",
            IntegerList(1),
        ),
        "units": Option(64, "the tower's dense layer after the convolutions", Integer(1)),
    }

    def transform(self, x, item):
        data, _ = dense_with_mask(x, "")
        h, w, c = (item.options[k] for k in ("height", "width", "channels"))

        def decode(blob):
            def real():
                img = tf.io.decode_image(blob, channels=c, expand_animations=False)
                img = tf.image.resize(tf.cast(img, tf.float32), [h, w], antialias=True)
                return tf.clip_by_value(img / 255.0, 0.0, 1.0)

            return tf.cond(tf.strings.length(blob) > 0, real, lambda: tf.zeros([h, w, c]))

        images = tf.map_fn(decode, data, fn_output_signature=tf.TensorSpec([h, w, c], tf.float32))
        return {item.name: images}

    def tower(self, inputs, item, info):
        import tf_keras as keras

        from trainer.layers import Presence

        name, options = item.name, item.options
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


MODALITIES.register(Image())

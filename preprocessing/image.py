"""Images (PNG/JPEG bytes): decoded, resized to the declared height x width x channels, in [0, 1].

A missing or empty image becomes an all-zero image.
"""

import tensorflow as tf

from preprocessing.base import BYTES, Modality, check_choice, check_int, dense_with_mask


class Image(Modality):
    name = "image"
    schema_types = frozenset({BYTES})
    defaults = {"height": 32, "width": 32, "channels": 3}

    def validate(self, options):
        return (
            check_int(options, "height", 1)
            + check_int(options, "width", 1)
            + check_choice(options, "channels", {1, 3})
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


MODALITY = Image()

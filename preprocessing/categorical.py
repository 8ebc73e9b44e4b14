"""Categorical inputs (string or int): a vocabulary with OOV buckets; missing values go to OOV."""

import tensorflow as tf
import tensorflow_transform as tft

from preprocessing.base import (
    MISSING_TOKEN,
    Modality,
    as_string,
    check_int,
    dense_with_mask,
    embedding_dim,
)


class Categorical(Modality):
    name = "categorical"
    defaults = {
        "top_k": 1000,  # keep the most frequent values
        "frequency_threshold": 1,  # ... seen at least this often in the training split
        "num_oov_buckets": 1,  # unseen and missing values hash into these buckets
        "embedding_dim": None,  # the tower's embedding size; None: grows with the vocabulary
    }

    def validate(self, options):
        return (
            check_int(options, "top_k", 1)
            + check_int(options, "frequency_threshold", 1)
            + check_int(options, "num_oov_buckets", 1)
            + check_int(options, "embedding_dim", 1, allow_none=True)
        )

    def transform(self, x, name, options):
        values, present = dense_with_mask(x, "")
        values = as_string(values)
        vocab = tft.vocabulary(
            tf.boolean_mask(values, present),
            top_k=options["top_k"],
            frequency_threshold=options["frequency_threshold"]
            if options["frequency_threshold"] > 1
            else None,
            vocab_filename=name,
        )
        values = tf.where(present, values, tf.fill(tf.shape(values), MISSING_TOKEN))
        ids = tft.apply_vocabulary(values, vocab, num_oov_buckets=options["num_oov_buckets"])
        return {name: ids}

    def tower(self, inputs, name, options, info):
        import tf_keras as keras

        from trainer.layers import Presence

        size = info.vocab_size(name) + options["num_oov_buckets"]
        x = keras.layers.Embedding(size, embedding_dim(options, size), name=f"{name}_embedding")(
            inputs[name]
        )
        # Missing values have their own (OOV) embedding: the input is always "present".
        return x, Presence("all", name=f"{name}_present")(inputs[name])


MODALITY = Categorical()

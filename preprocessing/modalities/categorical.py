"""Categorical inputs (string or int): a vocabulary with OOV buckets; missing values go to OOV."""

import tensorflow as tf

from preprocessing.base import (
    BYTES,
    EMBEDDING_DIM,
    MISSING_TOKEN,
    Modality,
    as_string,
    build_vocabulary,
    dense_with_mask,
    embedding_dim,
    vocabulary_options,
)
from preprocessing.registry import MODALITIES


class Categorical(Modality):
    name = "categorical"
    doc = "one value of a set (string or int): a vocabulary id, an embedding"
    csv_type = BYTES  # codes stay strings: 02139 keeps its zero
    drift = "categories"
    options = {
        **vocabulary_options(top_k=1000, frequency_threshold=1),
        "embedding_dim": EMBEDDING_DIM,
    }

    def transform(self, x, item):
        values, present = dense_with_mask(x, "")
        values = as_string(values)
        values_or_missing = tf.where(present, values, tf.fill(tf.shape(values), MISSING_TOKEN))
        ids = build_vocabulary(tf.boolean_mask(values, present), item, apply_to=values_or_missing)
        return {item.name: ids}

    def tower(self, inputs, item, info):
        import tf_keras as keras

        from trainer.layers import Presence

        name = item.name
        size = info.vocab_size(name) + item.options["num_oov_buckets"]
        x = keras.layers.Embedding(
            size, embedding_dim(item.options, size), name=f"{name}_embedding"
        )(inputs[name])
        # Missing values have their own (OOV) embedding: the input is always "present".
        return x, Presence("all", name=f"{name}_present")(inputs[name])


MODALITIES.register(Categorical())

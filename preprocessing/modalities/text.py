"""Free text: lower-cased, split into word tokens, a vocabulary with OOV, padded to max_length."""

import tensorflow as tf

from preprocessing.base import (
    BYTES,
    EMBEDDING_DIM,
    MAX_LENGTH_DOC,
    Modality,
    build_vocabulary,
    dense_with_mask,
    embedding_dim,
    padded_ids,
    vocabulary_options,
)
from preprocessing.options import Choice, Integer, Option
from preprocessing.registry import MODALITIES


def tokenize(text: tf.Tensor) -> tf.RaggedTensor:
    """[batch] strings -> [batch, None] tokens: Unicode lower case, punctuation as separators."""
    text = tf.strings.lower(text, encoding="utf-8")
    text = tf.strings.regex_replace(text, r"[^\pL\pN']+", " ")
    return tf.strings.split(text)


class Text(Modality):
    name = "text"
    doc = "free text: word tokens, a vocabulary, an embedding and a sequence encoder"
    schema_types = frozenset({BYTES})
    csv_type = BYTES  # whatever the cells look like
    options = {
        **vocabulary_options(top_k=20000, frequency_threshold=2),
        "max_length": Option(32, f"tokens: {MAX_LENGTH_DOC}", Integer(1)),
        "embedding_dim": EMBEDDING_DIM,
        "encoder": Option(
            "pooling", "the tower's sequence encoder", Choice(("pooling", "conv1d", "lstm"))
        ),
    }

    def transform(self, x, item):
        text, _ = dense_with_mask(x, "")
        ids = build_vocabulary(tokenize(text), item)
        return {item.name: padded_ids(ids, item.options["max_length"], keep_lowest=False)}

    def tower(self, inputs, item, info):
        import tf_keras as keras

        from trainer.layers import MaskedPooling, Presence

        name, options = item.name, item.options
        ids = inputs[name]
        size = info.vocab_size(name) + options["num_oov_buckets"] + 1  # + padding id 0
        dim = embedding_dim(options, size)
        x = keras.layers.Embedding(size, dim, name=f"{name}_embedding")(ids)
        if options["encoder"] == "conv1d":
            x = keras.layers.Conv1D(dim, 3, padding="same", activation="relu", name=f"{name}_conv")(
                x
            )
            x = MaskedPooling("max", name=f"{name}_pool")(x, ids)
        elif options["encoder"] == "lstm":
            mask = keras.layers.Embedding(size, dim, mask_zero=True, name=f"{name}_mask")
            x = keras.layers.LSTM(dim, name=f"{name}_lstm")(x, mask=mask.compute_mask(ids))
        else:
            x = MaskedPooling("mean", name=f"{name}_pool")(x, ids)
        return x, Presence("ids", name=f"{name}_present")(ids)


MODALITIES.register(Text())

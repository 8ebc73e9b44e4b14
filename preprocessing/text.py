"""Free text: lower-cased, split into word tokens, a vocabulary with OOV, padded to max_length."""

import tensorflow as tf
import tensorflow_transform as tft

from preprocessing.base import (
    BYTES,
    Modality,
    check_choice,
    check_int,
    dense_with_mask,
    embedding_dim,
    padded_ids,
)


def tokenize(text: tf.Tensor) -> tf.RaggedTensor:
    """[batch] strings -> [batch, None] tokens: Unicode lower case, punctuation as separators."""
    text = tf.strings.lower(text, encoding="utf-8")
    text = tf.strings.regex_replace(text, r"[^\pL\pN']+", " ")
    return tf.strings.split(text)


class Text(Modality):
    name = "text"
    schema_types = frozenset({BYTES})
    defaults = {
        "top_k": 20000,
        "frequency_threshold": 2,
        "num_oov_buckets": 1,
        "max_length": 32,  # tokens kept per example; shorter texts are padded with id 0
        "embedding_dim": None,
        "encoder": "pooling",  # the tower's sequence encoder: pooling | conv1d | lstm
    }

    def validate(self, options):
        return (
            check_int(options, "top_k", 1)
            + check_int(options, "frequency_threshold", 1)
            + check_int(options, "num_oov_buckets", 1)
            + check_int(options, "max_length", 1)
            + check_int(options, "embedding_dim", 1, allow_none=True)
            + check_choice(options, "encoder", {"pooling", "conv1d", "lstm"})
        )

    def transform(self, x, name, options):
        text, _ = dense_with_mask(x, "")
        tokens = tokenize(text)
        vocab = tft.vocabulary(
            tokens,
            top_k=options["top_k"],
            frequency_threshold=options["frequency_threshold"]
            if options["frequency_threshold"] > 1
            else None,
            vocab_filename=name,
        )
        ids = tft.apply_vocabulary(tokens, vocab, num_oov_buckets=options["num_oov_buckets"])
        return {name: padded_ids(ids, options["max_length"], keep_lowest=False)}

    def tower(self, inputs, name, options, info):
        import tf_keras as keras

        from trainer.layers import MaskedPooling, Presence

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


MODALITY = Text()

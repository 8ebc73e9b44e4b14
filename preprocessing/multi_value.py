"""Delimiter-separated lists ("Tom Hanks, Meg Ryan"): a vocabulary over the values.

encoding: sequence -> [max_length] ids (0 = padding), keeping the most frequent values of a long
list; bag -> a [top_k + num_oov_buckets] vector of counts.
"""

import tensorflow as tf
import tensorflow_transform as tft

from preprocessing.base import (
    BYTES,
    Modality,
    OptionError,
    check_choice,
    check_int,
    dense_with_mask,
    embedding_dim,
    padded_ids,
)


def split_values(text: tf.Tensor, delimiter: str) -> tf.RaggedTensor:
    """[batch] strings -> [batch, None] stripped, non-empty values."""
    parts = tf.strings.strip(tf.strings.split(text, sep=delimiter))
    return tf.ragged.boolean_mask(parts, tf.strings.length(parts) > 0)


class MultiValue(Modality):
    name = "multi_value"
    schema_types = frozenset({BYTES})
    defaults = {
        "delimiter": ",",
        "encoding": "sequence",
        "top_k": 10000,
        "frequency_threshold": 2,
        "num_oov_buckets": 1,
        "max_length": 16,
        "embedding_dim": None,
        "combiner": "mean",  # the tower's embedding bag: mean | sum
    }

    def validate(self, options):
        errors = check_choice(options, "encoding", {"sequence", "bag"})
        if not isinstance(options["delimiter"], str) or not options["delimiter"]:
            errors.append(OptionError("delimiter", "must be a non-empty string"))
        return (
            errors
            + check_int(options, "top_k", 1)
            + check_int(options, "frequency_threshold", 1)
            + check_int(options, "num_oov_buckets", 1)
            + check_int(options, "max_length", 1)
            + check_int(options, "embedding_dim", 1, allow_none=True)
            + check_choice(options, "combiner", {"mean", "sum"})
        )

    def transform(self, x, name, options):
        text, _ = dense_with_mask(x, "")
        values = split_values(text, options["delimiter"])
        vocab = tft.vocabulary(
            values,
            top_k=options["top_k"],
            frequency_threshold=options["frequency_threshold"]
            if options["frequency_threshold"] > 1
            else None,
            vocab_filename=name,
        )
        ids = tft.apply_vocabulary(values, vocab, num_oov_buckets=options["num_oov_buckets"])
        if options["encoding"] == "bag":
            depth = options["top_k"] + options["num_oov_buckets"]
            counts = tf.reduce_sum(tf.one_hot(ids.to_tensor(default_value=-1), depth), axis=1)
            return {name: counts}
        return {name: padded_ids(ids, options["max_length"], keep_lowest=True)}

    def tower(self, inputs, name, options, info):
        import tf_keras as keras

        from trainer.layers import CountFractions, MaskedPooling, Presence

        x = inputs[name]
        if options["encoding"] == "bag":  # counts: a linear embedding bag
            size = options["top_k"] + options["num_oov_buckets"]
            counts = (
                CountFractions(name=f"{name}_fractions")(x) if options["combiner"] == "mean" else x
            )
            tower = keras.layers.Dense(
                embedding_dim(options, size), use_bias=False, name=f"{name}_bag"
            )(counts)
            return tower, Presence("nonzero", name=f"{name}_present")(x)
        size = info.vocab_size(name) + options["num_oov_buckets"] + 1  # + padding id 0
        embedded = keras.layers.Embedding(
            size, embedding_dim(options, size), name=f"{name}_embedding"
        )(x)
        tower = MaskedPooling(options["combiner"], name=f"{name}_bag")(embedded, x)
        return tower, Presence("ids", name=f"{name}_present")(x)


MODALITY = MultiValue()

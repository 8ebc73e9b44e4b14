"""Delimiter-separated lists ("Tom Hanks, Meg Ryan"): a vocabulary over the values.

encoding: sequence -> [max_length] ids (0 = padding), keeping the most frequent values of a long
list; bag -> a [top_k + num_oov_buckets] vector of counts.
"""

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
from preprocessing.options import Choice, Integer, Option, String
from preprocessing.registry import MODALITIES


def split_values(text: tf.Tensor, delimiter: str) -> tf.RaggedTensor:
    """[batch] strings -> [batch, None] stripped, non-empty values.

    Built from the split's flat values and row ids: tf.Transform traces preprocessing_fn ten
    times per run, and the ragged strip and boolean_mask made half of each trace's ops."""
    parts = tf.compat.v1.strings.split(text, sep=delimiter, result_type="SparseTensor")
    values = tf.strings.strip(parts.values)
    keep = tf.strings.length(values) > 0
    return tf.RaggedTensor.from_value_rowids(
        tf.boolean_mask(values, keep),
        tf.boolean_mask(parts.indices[:, 0], keep),
        nrows=parts.dense_shape[0],
        validate=False,
    )


class MultiValue(Modality):
    name = "multi_value"
    doc = "a delimited list of names: a vocabulary over the values, an embedding bag"
    schema_types = frozenset({BYTES})
    csv_type = BYTES  # whatever the cells look like
    options = {
        "delimiter": Option(",", "what separates the values in a cell", String()),
        "encoding": Option(
            "sequence",
            "sequence: the max_length most frequent values as ids; bag: counts per value",
            Choice(("sequence", "bag")),
        ),
        **vocabulary_options(top_k=10000, frequency_threshold=2),
        "max_length": Option(16, f"values: {MAX_LENGTH_DOC}", Integer(1)),
        "embedding_dim": EMBEDDING_DIM,
        "combiner": Option("mean", "the tower's embedding bag", Choice(("mean", "sum"))),
    }

    def transform(self, x, item):
        options = item.options
        text, _ = dense_with_mask(x, "")
        ids = build_vocabulary(split_values(text, options["delimiter"]), item)
        if options["encoding"] == "bag":
            depth = options["top_k"] + options["num_oov_buckets"]
            counts = tf.reduce_sum(tf.one_hot(ids.to_tensor(default_value=-1), depth), axis=1)
            return {item.name: counts}
        return {item.name: padded_ids(ids, options["max_length"], keep_lowest=True)}

    def tower(self, inputs, item, info):
        import tf_keras as keras

        from trainer.layers import CountFractions, MaskedPooling, Presence

        name, options = item.name, item.options
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


MODALITIES.register(MultiValue())

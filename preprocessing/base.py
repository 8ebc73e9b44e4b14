"""What every modality shares: the `Modality` contract, shared options and tensor helpers.

A modality is one module in `preprocessing/modalities/` with a `Modality` subclass, registered
with `MODALITIES.register(...)`; nothing else needs editing to add one.
"""

from __future__ import annotations

from typing import ClassVar

import tensorflow as tf
import tensorflow_transform as tft

from preprocessing.options import Configurable, Integer, Nullable, Option

MISSING_TOKEN = "__mimo_missing__"

# Schema feature types as TFDV names them.
INT, FLOAT, BYTES = "INT", "FLOAT", "BYTES"


class Modality(Configurable):
    """An input modality: how a raw column becomes model-ready tensors, and the tower reading them.

    Every hook receives the input's `InputSpec` (`item.name`, `item.column`, `item.options`).
    """

    kind = "modality"
    # Schema types a source column may have for this modality.
    schema_types: ClassVar[frozenset[str]] = frozenset({INT, FLOAT, BYTES})
    # How a CSV column read by this modality is typed (None: from its values); see
    # components/csv_example_gen.py.
    csv_type: ClassVar[str | None] = None
    # What drift and skew compare of its column (pipeline/monitoring/drift.py): "numbers" (the
    # histogram: Jensen-Shannon), "categories" (the value frequencies: Jensen-Shannon and the
    # L-infinity norm), or None (cells whose whole values say little: text, lists, images,
    # sequences).
    drift: ClassVar[str | None] = None

    def output_names(self, item) -> list[str]:
        """Names of the transformed features this input produces."""
        return [item.name]

    def columns(self, item) -> tuple[str, ...]:
        """The raw columns this input reads: its `column` (a modality may read several)."""
        return (item.column,)

    def transform(self, x, item) -> dict[str, tf.Tensor]:
        """`x`: the raw column, or the list of them when the input reads several (`columns`)."""
        raise NotImplementedError

    def input_checks(
        self, item, column: str, column_type: str, column_stats: dict, cells
    ) -> list[str]:
        """Problems of one of the input's columns for the data gate (one line each).

        `column_type` is the schema's (INT, FLOAT, BYTES); `column_stats` maps split name to
        TFDV's FeatureNameStatistics of the column; `cells()` iterates (where, text) over the
        column's non-missing CSV cells ("<file> line <n>", nothing for other formats): a check
        reads only as far as it needs."""
        return []

    # -- the model side: the tower that reads what `transform` produced ---------------------------
    def keras_inputs(self, item, info) -> dict:
        """One named Keras Input per transformed feature, shaped as Transform wrote it."""
        import tf_keras as keras

        inputs = {}
        for feature in self.output_names(item):
            spec = info.feature_spec[feature]
            inputs[feature] = keras.Input(shape=tuple(spec.shape), dtype=spec.dtype, name=feature)
        return inputs

    def tower(self, inputs: dict, item, info):
        """Returns ([B, D] tower output, [B] bool presence of this input)."""
        raise NotImplementedError

    # -- serving: the exported model's `serving_raw` signature (trainer/export.py) ---------------
    # `features` maps each raw column to its tf.io feature (FixedLen or VarLen).
    def serving_spec(self, item, features: dict) -> tf.TensorSpec:
        """serving_raw's argument for this input, named by the input: [batch] raw values."""
        return tf.TensorSpec([None], features[item.column].dtype, name=item.name)

    def serving_tensor(self, values, item, features: dict) -> dict:
        """serving_raw's argument -> {raw column: the tensor the transform layer reads}."""
        return {item.column: raw_tensor(values, features[item.column])}


# Options several modalities share, declared once (each modality picks its own defaults).
def vocabulary_options(top_k: int, frequency_threshold: int) -> dict[str, Option]:
    return {
        "top_k": Option(top_k, "keep the most frequent values (the vocabulary's size)", Integer(1)),
        "frequency_threshold": Option(
            frequency_threshold,
            "a value enters the vocabulary when seen this often in the training split",
            Integer(1),
        ),
        "num_oov_buckets": Option(
            1, "unseen (and missing) values hash into this many extra ids", Integer(1)
        ),
    }


EMBEDDING_DIM = Option(
    None, "the tower's embedding size; null: grows with the vocabulary", Nullable(Integer(1))
)
MAX_LENGTH_DOC = "ids kept per example; shorter ones are padded with id 0"


def build_vocabulary(values, item, apply_to=None):
    """A vocabulary of the training split's `values` (a file named after the input), and the ids
    of `apply_to` (default: `values`) in it, with the input's OOV buckets after the known ids."""
    options = item.options
    threshold = options["frequency_threshold"]
    vocab = tft.vocabulary(
        values,
        top_k=options["top_k"],
        frequency_threshold=threshold if threshold > 1 else None,
        vocab_filename=item.name,
    )
    return tft.apply_vocabulary(
        values if apply_to is None else apply_to,
        vocab,
        num_oov_buckets=options["num_oov_buckets"],
    )


def embedding_dim(options: dict, vocab: int) -> int:
    """The spec's `embedding_dim`, else a size that grows slowly with the vocabulary."""
    if options.get("embedding_dim"):
        return options["embedding_dim"]
    return int(min(64, max(4, round(1.6 * vocab**0.56))))


# ---------------------------------------------------------------------------------------------
# Tensor helpers. A raw column reaches preprocessing_fn as a dense [batch, 1] tensor when the
# schema says it is always present, and as a SparseTensor [batch, None] otherwise.


def dense_with_mask(x, default) -> tuple[tf.Tensor, tf.Tensor]:
    """Returns ([batch] values with `default` where missing, [batch] bool presence)."""
    if isinstance(x, tf.RaggedTensor):
        x = x.to_sparse()
    if isinstance(x, tf.SparseTensor):
        batch = x.dense_shape[0]
        one = tf.SparseTensor(x.indices, x.values, tf.stack([batch, tf.constant(1, tf.int64)]))
        if x.indices.shape[-1] == 2:
            # Keep only the first value of each row (columns of a CSV hold one value).
            keep = tf.equal(x.indices[:, 1], 0)
            one = tf.sparse.retain(one, keep)
        values = tf.sparse.to_dense(one, default_value=tf.cast(default, x.dtype))
        present = tf.sparse.to_dense(
            tf.SparseTensor(one.indices, tf.ones_like(one.values, tf.bool), one.dense_shape),
            default_value=False,
        )
        return tf.reshape(values, [-1]), tf.reshape(present, [-1])
    x = tf.convert_to_tensor(x)
    if x.shape.rank == 2:
        x = x[:, 0]
    return x, tf.ones_like(x, tf.bool)


def raw_tensor(values: tf.Tensor, feature) -> tf.Tensor | tf.SparseTensor:
    """[batch] raw values -> what the transform layer expects for this raw feature."""
    if isinstance(feature, tf.io.FixedLenFeature):
        return tf.reshape(values, [-1, 1])
    # VarLen: one value per row; an empty string, or a NaN for a float, is a missing value.
    n = tf.shape(values, out_type=tf.int64)[0]
    rows = tf.range(n)
    if values.dtype == tf.string:
        keep = tf.not_equal(values, "")
    elif values.dtype.is_floating:
        keep = tf.logical_not(tf.math.is_nan(values))
    else:
        keep = tf.ones_like(rows, tf.bool)
    indices = tf.stack(
        [tf.boolean_mask(rows, keep), tf.zeros_like(tf.boolean_mask(rows, keep))], axis=1
    )
    return tf.SparseTensor(indices, tf.boolean_mask(values, keep), tf.stack([n, 1]))


def as_string(x: tf.Tensor) -> tf.Tensor:
    return x if x.dtype == tf.string else tf.strings.as_string(x)


def padded_ids(ids: tf.RaggedTensor, max_length: int, keep_lowest: bool) -> tf.Tensor:
    """[batch, max_length] ids shifted by +1 so that 0 is padding.

    With keep_lowest, each row keeps its `max_length` lowest ids: vocabulary ids are ranked by
    frequency, so that keeps the best-known values of a long list (order is lost: for bags).
    """
    ids = ids + 1
    if keep_lowest:
        big = tf.constant(tf.int64.max, tf.int64)
        dense = tf.sort(ids.to_tensor(default_value=big), axis=1)
        dense = tf.pad(dense, [[0, 0], [0, max_length]], constant_values=big)[:, :max_length]
        dense = tf.reshape(dense, [-1, max_length])
        return tf.where(tf.equal(dense, big), tf.zeros_like(dense), dense)
    return ids.to_tensor(default_value=0, shape=[None, max_length])

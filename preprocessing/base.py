"""What every modality and every head type shares: option validation and tensor helpers.

A modality is one module in this package defining a subclass of `Modality` and exposing an
instance as `MODALITY`. The registry (`preprocessing.MODALITIES`) discovers it; nothing else
needs editing to add one.
"""

from __future__ import annotations

from typing import Any, ClassVar

import tensorflow as tf

MISSING_TOKEN = "__mimo_missing__"

# Schema feature types as TFDV names them.
INT, FLOAT, BYTES = "INT", "FLOAT", "BYTES"


class OptionError(ValueError):
    """An option of one input or output is wrong; `key` is the option's name."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def check_int(options: dict, key: str, minimum: int = 0, allow_none: bool = False) -> list:
    value = options.get(key)
    if value is None and allow_none:
        return []
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        return [OptionError(key, f"must be an integer >= {minimum}, got {value!r}")]
    return []


def check_choice(options: dict, key: str, choices) -> list:
    if options.get(key) not in choices:
        return [OptionError(key, f"must be one of {sorted(choices)}, got {options.get(key)!r}")]
    return []


class Configurable:
    """Defaults and validation of a modality's or head type's own options."""

    name: ClassVar[str]
    kind: ClassVar[str] = "modality"  # how errors name it: "modality" or "head type"
    defaults: ClassVar[dict[str, Any]] = {}

    def resolve(self, options: dict) -> tuple[dict, list[OptionError]]:
        """Fill defaults in; return the options and every error found (unknown keys included)."""
        errors = [
            OptionError(
                k,
                f"unknown option for {self.kind} '{self.name}' "
                f"(known: {', '.join(sorted(self.defaults)) or 'none'})",
            )
            for k in options
            if k not in self.defaults
        ]
        resolved = {**self.defaults, **{k: v for k, v in options.items() if k in self.defaults}}
        if not errors:
            errors = self.validate(resolved)
        return resolved, errors

    def validate(self, options: dict) -> list[OptionError]:
        return []


class Modality(Configurable):
    """An input modality: how a raw column becomes model-ready tensors (and, later, its tower)."""

    kind = "modality"
    # Schema types a source column may have for this modality.
    schema_types: ClassVar[frozenset[str]] = frozenset({INT, FLOAT, BYTES})

    def output_names(self, name: str, options: dict) -> list[str]:
        """Names of the transformed features this input produces."""
        return [name]

    def transform(self, x, name: str, options: dict) -> dict[str, tf.Tensor]:
        raise NotImplementedError

    # -- the model side: the tower that reads what `transform` produced ---------------------------
    def keras_inputs(self, name: str, options: dict, info) -> dict:
        """One named Keras Input per transformed feature, shaped as Transform wrote it."""
        import tf_keras as keras

        inputs = {}
        for feature in self.output_names(name, options):
            spec = info.feature_spec[feature]
            inputs[feature] = keras.Input(shape=tuple(spec.shape), dtype=spec.dtype, name=feature)
        return inputs

    def tower(self, inputs: dict, name: str, options: dict, info):
        """Returns ([B, D] tower output, [B] bool presence of this input)."""
        raise NotImplementedError


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

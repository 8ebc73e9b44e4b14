"""Free text: lower-cased, split into word tokens, a vocabulary with OOV, padded to max_length."""

import tensorflow as tf
import tensorflow_transform as tft

from preprocessing.base import BYTES, Modality, check_int, dense_with_mask, padded_ids


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
    }

    def validate(self, options):
        return (
            check_int(options, "top_k", 1)
            + check_int(options, "frequency_threshold", 1)
            + check_int(options, "num_oov_buckets", 1)
            + check_int(options, "max_length", 1)
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


MODALITY = Text()

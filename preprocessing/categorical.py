"""Categorical inputs (string or int): a vocabulary with OOV buckets; missing values go to OOV."""

import tensorflow as tf
import tensorflow_transform as tft

from preprocessing.base import (
    MISSING_TOKEN,
    Modality,
    as_string,
    check_int,
    dense_with_mask,
)


class Categorical(Modality):
    name = "categorical"
    defaults = {
        "top_k": 1000,  # keep the most frequent values
        "frequency_threshold": 1,  # ... seen at least this often in the training split
        "num_oov_buckets": 1,  # unseen and missing values hash into these buckets
    }

    def validate(self, options):
        return (
            check_int(options, "top_k", 1)
            + check_int(options, "frequency_threshold", 1)
            + check_int(options, "num_oov_buckets", 1)
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


MODALITY = Categorical()

"""The Transform component's preprocessing_fn, generated from the dataset spec.

Transform calls `preprocessing_fn(inputs, custom_config)` with custom_config={'spec': {...}}:
each input goes through its modality's own transform, each head's label through its head type,
and each declared slice is materialised as `slice_<name>` for the Evaluator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import tensorflow as tf

from preprocessing.base import as_string, dense_with_mask
from preprocessing.heads.base import label_name, label_present_name
from preprocessing.registry import HEAD_TYPES, MODALITIES

if TYPE_CHECKING:
    from pipeline.spec import Spec


def slice_name(name: str) -> str:
    return f"slice_{name}"


def transform_slice(x, bucket_width):
    if bucket_width:
        values, present = dense_with_mask(x, 0)
        values = tf.cast(values, tf.float64)
        bucket = tf.cast(tf.floor(values / bucket_width) * bucket_width, tf.int64)
        return tf.where(present, as_string(bucket), tf.fill(tf.shape(bucket), "missing"))
    values, present = dense_with_mask(x, "" if x.dtype == tf.string else 0)
    values = as_string(values)
    return tf.where(present, values, tf.fill(tf.shape(values), "missing"))


def transform_all(inputs: dict, spec: Spec) -> dict:
    outputs = {}
    for item in spec.inputs:
        raw = [inputs[c] for c in item.columns]
        x = raw[0] if len(raw) == 1 else raw
        outputs.update(MODALITIES[item.modality].transform(x, item))
    present = {}
    for head in spec.outputs:
        label, present[head.name] = HEAD_TYPES[head.type].transform_label(inputs[head.column], head)
        outputs[label_name(head.name)] = label
    # `missing_label: drop`: an example without that head's label counts for no head.
    dropped = [present[h.name] for h in spec.outputs if h.missing_label == "drop"]
    for head in spec.outputs:
        counts = tf.reduce_all(tf.stack([present[head.name], *dropped]), axis=0)
        outputs[label_present_name(head.name)] = tf.cast(counts, tf.float32)
    for sl in spec.slices:
        outputs[slice_name(sl.name)] = transform_slice(inputs[sl.column], sl.bucket_width)
    return outputs


def preprocessing_fn(inputs, custom_config):
    from pipeline.spec import Spec  # not at import time: the spec imports this package

    return transform_all(inputs, Spec.from_dict(custom_config["spec"]))

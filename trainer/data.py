"""The Trainer's input pipeline: (features, {head: label}, {head: weight}) from transformed TFRecords.

TFX's TensorFlowDatasetOptions takes one label key, so the dataset is built here: files are read
in parallel, records batched before parsing (one vectorised parse per batch), labels and weights
split out per head with TensorFlow ops only (no Python in the hot loop), prefetched.

A head's weight is 0 for an example without its label (`<head>_label_present`), so that example
trains every other head and the shared layers but not this head; the loss's weight also carries
the head's class weights, the metrics' weight only the mask. The loss's weight is divided by the
head's labelled fraction of the training split: Keras averages a loss over the whole batch, so a
head labelled on 36% of the rows would otherwise weigh 0.36x its `loss_weight` against the others;
this way each head's loss is the mean over its labelled examples (in expectation), whatever the
fraction (measured in `make bench`, part 7).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from pipeline.spec import Spec
from preprocessing import HEAD_TYPES, MODALITIES
from preprocessing.heads.base import label_name


def input_feature_names(spec: Spec) -> list[str]:
    names = []
    for item in spec.inputs:
        names += MODALITIES[item.modality].output_names(item)
    return names


def make_dataset(
    file_pattern,
    spec: Spec,
    info,
    batch_size: int,
    shuffle: bool = False,
    repeat: bool = False,
    weights: str = "loss",
    seed: int | None = None,
    cache: bool = False,
) -> tf.data.Dataset:
    """`weights`: "loss" (label mask x class weights), "mask" (the label mask: for metrics) or
    "none". `cache`: keep the decompressed records in memory after the first epoch (the examples
    are still reshuffled and parsed every epoch); for splits that fit in memory, see should_cache.
    """
    if weights not in ("loss", "mask", "none"):
        raise ValueError(f"weights must be loss, mask or none, got {weights!r}")
    feature_spec = info.feature_spec
    files = tf.data.Dataset.list_files(file_pattern, shuffle=shuffle, seed=seed)
    ds = tf.data.TFRecordDataset(
        files, compression_type="GZIP", num_parallel_reads=tf.data.AUTOTUNE
    )
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(10 * batch_size, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=False)
    features = input_feature_names(spec)
    heads = [(HEAD_TYPES[h.type], h) for h in spec.outputs]

    def split(serialized):
        parsed = tf.io.parse_example(serialized, feature_spec)
        x = {name: parsed[name] for name in features}
        raw = {h.name: parsed[label_name(h.name)] for _, h in heads}
        y = {h.name: t.keras_label(raw[h.name]) for t, h in heads}
        if weights == "none":
            return x, y
        w = {}
        for t, h in heads:
            mask = parsed[h.label_present]
            if weights == "loss":
                mask = mask / max(info.labelled_fraction.get(h.name, 1.0), MIN_FRACTION)
                own = t.label_weight(raw[h.name], h, info)
                mask = mask if own is None else mask * own
            w[h.name] = mask
        return x, y, w

    return ds.map(split, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


# A head labelled on fewer rows than this fraction is not weighted up further.
MIN_FRACTION = 0.01


# Cache a split in memory when its compressed files are at most this big (records take a few
# times that once decompressed).
CACHE_LIMIT_BYTES = 256 * 2**20


def should_cache(file_pattern, setting) -> bool:
    """The spec's training.cache_in_memory: true, false, or "auto" (by the split's size)."""
    if setting != "auto":
        return bool(setting)
    patterns = [file_pattern] if isinstance(file_pattern, str) else list(file_pattern)
    size = sum(tf.io.gfile.stat(f).length for p in patterns for f in tf.io.gfile.glob(p))
    return size <= CACHE_LIMIT_BYTES


class Labels(dict):
    """{head: numpy labels of the examples that have one}; `rows`: how many examples were read."""

    rows: int = 0

    def labelled_fraction(self) -> dict:
        return {h: len(v) / self.rows for h, v in self.items()} if self.rows else {}


def collect_labels(
    file_pattern, spec: Spec, feature_spec: dict, max_examples: int = 51200
) -> Labels:
    """{head: numpy labels of the examples that have one} among the first `max_examples`
    examples, read without shuffling."""
    names = [n for h in spec.outputs for n in (label_name(h.name), h.label_present)]
    files = tf.data.Dataset.list_files(file_pattern, shuffle=False)
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP").take(max_examples).batch(1024)
    label_spec = {n: feature_spec[n] for n in names}
    ds = ds.map(lambda s: tf.io.parse_example(s, label_spec))
    values = {h.name: [] for h in spec.outputs}
    rows = 0
    for batch in ds:
        rows += len(batch[label_name(spec.outputs[0].name)])
        for h in spec.outputs:
            present = batch[h.label_present].numpy() > 0.5
            values[h.name].append(batch[label_name(h.name)].numpy()[present])
    labels = Labels({h: np.concatenate(v) if v else np.zeros([0]) for h, v in values.items()})
    labels.rows = rows
    return labels


def read_transformed(file_pattern, feature_spec: dict) -> dict:
    """A whole transformed split as {feature: numpy array over every example}; `file_pattern`
    one pattern or a list (a Trainer's fn_args.train_files)."""
    patterns = [file_pattern] if isinstance(file_pattern, str) else list(file_pattern)
    files = sorted(f for pattern in patterns for f in tf.io.gfile.glob(pattern))
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP")
    batches = list(ds.batch(4096).map(lambda s: tf.io.parse_example(s, feature_spec)))
    return {k: np.concatenate([b[k].numpy() for b in batches]) for k in feature_spec}


def write_transformed(data: dict, feature_spec: dict, path: str, rows=None) -> str:
    """Writes `rows` (default: all) of {feature: array} as a GZIP TFRecord file of transformed
    examples, the inverse of read_transformed (tests and the bench build variants with it)."""
    rows = range(len(next(iter(data.values())))) if rows is None else rows
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for i in rows:
            feature = {}
            for name, f in feature_spec.items():
                value = np.asarray(data[name][i]).reshape(-1)
                if f.dtype == tf.string:
                    feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=value))
                elif f.dtype == tf.int64:
                    feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=value))
                else:
                    feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=value))
            writer.write(
                tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
            )
    return path


def head_stats(labels: dict, spec: Spec, info) -> dict:
    """{head: what its head type learns from the training labels} (scales, class priors)."""
    return {h.name: HEAD_TYPES[h.type].label_stats(labels[h.name], h, info) for h in spec.outputs}

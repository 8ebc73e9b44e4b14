"""Runs a spec's preprocessing_fn with tf.Transform's Beam implementation on small real data.

The analyzers run in Beam (AnalyzeDataset, as Transform does); the resulting transform graph is
then applied to the same examples through TFTransformOutput, the way the Trainer and serving
apply it.
"""

import tempfile

import apache_beam as beam
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

from preprocessing.transform import preprocessing_fn


def serialize(instance, feature_spec):
    feature = {}
    for name, value in instance.items():
        dtype = feature_spec[name].dtype
        if dtype == tf.string:
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=value))
        elif dtype == tf.int64:
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=value))
        else:
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=value))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def run_transform(spec, instances, feature_spec, temp_dir=None):
    """Returns ({feature: numpy array over all examples}, TFTransformOutput)."""
    temp_dir = temp_dir or tempfile.mkdtemp(prefix="tft-")
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(feature_spec))
    custom_config = {"spec": spec.to_dict()}
    out_dir = f"{temp_dir}/transform_output"
    with beam.Pipeline(argv=["--direct_running_mode=in_memory", "--direct_num_workers=1"]) as p:
        with tft_beam.Context(temp_dir=temp_dir, force_tf_compat_v1=False):
            data = p | "Create" >> beam.Create(instances, reshuffle=False)
            transform_fn = (data, metadata) | tft_beam.AnalyzeDataset(
                lambda inputs: preprocessing_fn(inputs, custom_config)
            )
            _ = transform_fn | tft_beam.WriteTransformFn(out_dir)
    # The raw data's metadata beside it, as TFX's Transform writes it (the export reads it).
    metadata_io.write_metadata(metadata, f"{out_dir}/{tft.TFTransformOutput.RAW_METADATA_DIR}")
    tf_transform_output = tft.TFTransformOutput(out_dir)
    raw = tf.io.parse_example(
        tf.constant([serialize(i, feature_spec) for i in instances]), feature_spec
    )
    transformed = tf_transform_output.transform_features_layer()(raw)
    return {k: v.numpy() for k, v in transformed.items()}, tf_transform_output


def write_transformed(transformed: dict, tft_output, path: str, rows=None) -> str:
    """Writes transformed features (as returned by run_transform) as a GZIP TFRecord file."""
    from trainer.data import write_transformed as write

    return write(transformed, tft_output.transformed_feature_spec(), path, rows)

"""The exported SavedModel: the Transform graph inside, every head out.

Signatures:
- serving_default(examples: serialized raw tf.Example, no labels needed) -> {head: prediction,
  <multiclass head>_class, <multilabel head>_labels, <calibrated head>_uncalibrated (its
  probabilities before the temperature, which TFMA judges beside the calibrated ones)}.
- serving_raw(<input name>: [batch] raw values) -> the same dict; for TensorFlow Serving's
  REST/JSON API (`{"signature_name": "serving_raw", "instances": [{"title": ..., ...}]}`). Each
  input is named by its spec `name` (an identifier), not by its column: a column such as
  `Runtime (min)` cannot name a TensorFlow input.
- transform_features(examples) -> every transformed feature, labels and slices included (TFMA).
An input absent from an example is handled as missing: the model's learned "missing" vector.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
from tf_keras.src.saving.legacy.saved_model.utils import keras_option_scope

from components.contract import write_contract
from pipeline.spec import Spec
from preprocessing import HEAD_TYPES
from preprocessing.heads.base import uncalibrated_name
from trainer.data import input_feature_names


def _with_defaults(feature_spec: dict) -> dict:
    """FixedLen features get a default so that an example without the column still parses."""
    out = dict(feature_spec)
    for name, f in feature_spec.items():
        if isinstance(f, tf.io.FixedLenFeature) and f.default_value is None:
            fill = "" if f.dtype == tf.string else 0
            out[name] = tf.io.FixedLenFeature(
                f.shape, f.dtype, default_value=np.full(f.shape, fill).tolist()
            )
    return out


def _unanswered(outputs: dict, rows: tf.Tensor) -> dict:
    """In the rows given ([batch] bool), every float output NaN and every string output ""."""
    out = {}
    for key, value in outputs.items():
        if value.dtype.is_floating or value.dtype == tf.string:
            ones = tf.ones([tf.rank(value) - 1], tf.int32)
            mask = tf.reshape(rows, tf.concat([tf.shape(rows), ones], axis=0))
            blank = np.nan if value.dtype.is_floating else ""
            value = tf.where(mask, tf.constant(blank, value.dtype), value)
        out[key] = value
    return out


def input_raw_spec(tft_output, spec: Spec) -> dict:
    """The raw feature spec of the spec's input columns, every one optional (see _with_defaults)."""
    raw = tft_output.raw_feature_spec()
    return _with_defaults({c: raw[c] for c in sorted(spec.input_columns()) if c in raw})


class _Exporter(tf.Module):
    def __init__(self, model, tft_output, spec: Spec, info):
        super().__init__()
        self.model = model
        self.tft_layer = tft_output.transform_features_layer()
        self.spec, self.info = spec, info
        self.raw_spec = tft_output.raw_feature_spec()
        self.input_raw_spec = input_raw_spec(tft_output, spec)
        self.features = input_feature_names(spec)
        self.temperatures = temperature_layers(model, spec)

    def predict(self, raw_features: dict) -> dict:
        transformed = self.tft_layer(raw_features)
        predictions = self.model({k: transformed[k] for k in self.features}, training=False)
        outputs = {}
        for head in self.spec.outputs:
            outputs.update(
                HEAD_TYPES[head.type].serving_outputs(head, predictions[head.name], self.info)
            )
            if head.name in self.temperatures:
                layer = self.temperatures[head.name]
                outputs[uncalibrated_name(head.name)] = layer.uncalibrated(predictions[head.name])
        return outputs


def temperature_layers(model, spec: Spec) -> dict:
    """{head: its TemperatureActivation} of the calibrated heads (none in a model that has no
    such layer, as the boosted rival)."""
    from trainer.calibration import temperature_layer

    calibrated = [h.name for h in spec.outputs if h.calibration == "temperature"]
    layers = {name: temperature_layer(model, name) for name in calibrated}
    return {name: layer for name, layer in layers.items() if layer is not None}


def export(model, tft_output, spec: Spec, info, export_dir: str, serving_raw: bool = True) -> None:
    """`serving_raw` False: only what TFMA reads (serving_default, transform_features), for a
    model that is evaluated, never served (the boosted rival)."""
    exporter = _Exporter(model, tft_output, spec, info)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serving_default(examples):
        return exporter.predict(tf.io.parse_example(examples, exporter.input_raw_spec))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(examples):
        return exporter.tft_layer(tf.io.parse_example(examples, exporter.raw_spec))

    features = exporter.input_raw_spec
    inputs = sorted(
        (i for i in spec.inputs if all(c in features for c in i.columns)), key=lambda i: i.name
    )
    specs = [i.modality_type.serving_spec(i, features) for i in inputs]

    # A number never missing in training has no learned "missing": its NaN would reach the
    # network, and whether that shows in the outputs depends on the machine's kernels (relu(NaN)
    # is 0 on some CPUs: a silent answer for "0 reviews"). Such a row answers NaN everywhere,
    # on every machine; the MLflow model refuses it by name.
    # Only one-value-per-row inputs: in a sequence (a signal) a NaN is a missing step, which
    # the modality masks.
    always_present = [
        n
        for n, i in enumerate(inputs)
        if i.columns == (i.column,)
        and isinstance(features[i.column], tf.io.FixedLenFeature)
        and features[i.column].dtype.is_floating
        and math.prod(features[i.column].shape) <= 1
    ]

    @tf.function(input_signature=specs)
    def serving_raw_fn(*values):
        raw = {}
        for i, v in zip(inputs, values, strict=True):
            raw.update(i.modality_type.serving_tensor(v, i, features))
        outputs = exporter.predict(raw)
        if always_present:
            gaps = [tf.math.is_nan(values[n]) for n in always_present]
            outputs = _unanswered(outputs, tf.reduce_any(tf.stack(gaps), axis=0))
        return outputs

    signatures = {
        "serving_default": serving_default,
        "transform_features": transform_features,
        **({"serving_raw": serving_raw_fn} if serving_raw else {}),
    }
    # Only the signatures are served and evaluated: Keras's own per-layer call traces (for
    # reloading the model as Keras layers) would double the export's tracing.
    with keras_option_scope(save_traces=False, in_tf_saved_model_scope=True):
        tf.saved_model.save(exporter, export_dir, signatures=signatures)
    write_contract(export_dir)

"""The signal modality on the bundled BasicMotions recordings, with tf.Transform's Beam
implementation: per-channel scaling on real steps, padding masked, long sequences cut, bad steps
and missing cells masked; float lists (a TFRecord's layout) read step-major; every encoder's
tower."""

import os

import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO, read_csv_columns, tft_examples
from tft_harness import run_transform

from pipeline.spec import Spec

MOTIONS_CSV = os.path.join(REPO, "data", "motions", "motions.csv")


def motions_spec(
    name="accelerometer", column=None, path=MOTIONS_CSV, data_format="csv", **signal_options
):
    """One 3-channel signal input `name` (reading `column`, default the name), one head."""
    signal = {"name": name, "column": column or name, "modality": "signal"}
    if "columns" not in signal_options:
        signal["channels"] = 3
    return Spec.from_dict(
        {
            "name": "motions_test",
            "data": {"path": str(path), "format": data_format},
            "inputs": [{**signal, **signal_options}],
            "outputs": [{"name": "intense", "type": "binary"}],
        }
    )


FLOAT_LISTS = {
    "gyroscope": tf.io.VarLenFeature(tf.float32),
    "intense": tf.io.FixedLenFeature([1], tf.int64),
}


def float_list_instances():
    """The gyroscope recordings as a TFRecord holds them: step-major float lists of 100 steps x 3
    channels, with the `intense` label (feature spec FLOAT_LISTS)."""
    rows, _ = read_csv_columns(MOTIONS_CSV)
    return [
        {"gyroscope": np.array(r, np.float32).reshape(-1), "intense": [int(row["intense"])]}
        for r, row in zip(cells("gyroscope"), rows, strict=True)
    ]


def cells(column):
    """A column's cells as [steps][channels] floats."""
    rows, _ = read_csv_columns(MOTIONS_CSV)
    return [[[float(v) for v in s.split(",")] for s in r[column].split(";")] for r in rows]


def test_each_channel_scaled_on_real_steps_short_padded_long_cut_bad_masked(tmp_path):
    rows, kinds = read_csv_columns(MOTIONS_CSV)
    raw = cells("accelerometer")
    # Row 0 cut to 40 steps (padded and masked), row 1's cell emptied (a missing signal), row 2's
    # step 5 unreadable (a missing step); every other row is 100 steps, cut to the first 60.
    rows[0]["accelerometer"] = ";".join(rows[0]["accelerometer"].split(";")[:40])
    rows[1]["accelerometer"] = ""
    steps = rows[2]["accelerometer"].split(";")
    steps[5] = "1.0,oops,2.0"
    rows[2]["accelerometer"] = ";".join(steps)
    instances, feature_spec = tft_examples(rows, kinds)
    out, _ = run_transform(motions_spec(length=60), instances, feature_spec, str(tmp_path))
    x, mask = out["accelerometer"], out["accelerometer_mask"]
    assert x.shape == (80, 60, 3) and mask.shape == (80, 60)
    assert mask[0, :40].all() and not mask[0, 40:].any() and not x[0, 40:].any()
    assert not mask[1].any() and not x[1].any()
    assert mask[2].sum() == 59 and mask[2, 5] == 0 and not x[2, 5].any()
    real = x[mask > 0]  # [real steps, channels]
    np.testing.assert_allclose(real.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(real.std(axis=0), 1, atol=1e-3)
    # The scaling is each channel's own: row 3's first 60 steps, standardized per channel.
    kept = [np.array(raw[i][:60]) for i in range(3, 80)]
    kept = np.concatenate([raw_rows for raw_rows in kept] + [np.array(raw[0][:40])])
    kept = np.concatenate([kept, np.array([s for j, s in enumerate(raw[2][:60]) if j != 5])])
    mean, std = kept.mean(axis=0), kept.std(axis=0)
    np.testing.assert_allclose(x[3], (np.array(raw[3][:60]) - mean) / std, atol=1e-3)


def test_minmax_per_position_and_float_lists_read_step_major(tmp_path):
    raw = cells("gyroscope")
    # A TFRecord's float list: step-major, 100 steps x 3 channels; one row short (50 steps).
    instances = float_list_instances()
    instances[7]["gyroscope"] = instances[7]["gyroscope"][:150]
    feature_spec = FLOAT_LISTS
    spec = motions_spec("gyro", "gyroscope", scaling="minmax", per_position=True)
    out, _ = run_transform(spec, instances, feature_spec, str(tmp_path))
    x, mask = out["gyro"], out["gyro_mask"]
    assert mask[7, :50].all() and not mask[7, 50:].any()
    values = np.array(raw)  # [80, 100, 3]
    low, high = values.min(axis=0), values.max(axis=0)  # per (position, channel)
    low[50:] = values[np.arange(80) != 7, 50:].min(axis=0)
    high[50:] = values[np.arange(80) != 7, 50:].max(axis=0)
    np.testing.assert_allclose(x[0], (values[0] - low) / (high - low), atol=1e-5)
    assert x[mask > 0].min() >= -1e-6 and x[mask > 0].max() <= 1 + 1e-6


@pytest.mark.parametrize("encoder", ["conv1d", "lstm", "gru"])
def test_each_encoder_builds_a_tower_that_ignores_padding(encoder):
    """Padded steps change nothing: the same signal with other values in its masked steps gives
    the same tower output; an all-masked signal is absent."""
    import tf_keras as keras

    from preprocessing import MODALITIES

    spec = motions_spec(length=20, encoder=encoder, units=8)
    (item,) = spec.inputs
    info = type(
        "Info",
        (),
        {
            "feature_spec": {
                "accelerometer": tf.io.FixedLenFeature([20, 3], tf.float32),
                "accelerometer_mask": tf.io.FixedLenFeature([20], tf.float32),
            }
        },
    )()
    modality = MODALITIES["signal"]
    inputs = modality.keras_inputs(item, info)
    tower, present = modality.tower(inputs, item, info)
    model = keras.Model(inputs, [tower, present])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 20, 3)).astype(np.float32)
    mask = np.ones((3, 20), np.float32)
    mask[1, 12:] = 0
    mask[2] = 0
    other = x.copy()
    other[1, 12:] = 9.0  # what a masked step holds must not matter
    a, present_a = model.predict({"accelerometer": x, "accelerometer_mask": mask}, verbose=0)
    b, _ = model.predict({"accelerometer": other, "accelerometer_mask": mask}, verbose=0)
    assert a.shape[0] == 3 and a.shape[1] >= 8
    np.testing.assert_allclose(a[1], b[1], atol=1e-5)
    assert list(present_a) == [True, True, False]


@pytest.mark.parametrize("layout", ["var_len", "fixed_len"])
def test_serving_raw_takes_steps_of_channels_and_answers_as_serving_default(tmp_path, layout):
    """A float-list signal's serving_raw takes [batch, steps, channels] (NaN-padded) and answers
    what serving_default answers on the same rows as serialized tf.Examples; a shorter row
    padded with NaN steps is that shorter row. `fixed_len`: every training row is 100 steps,
    so the schema gives the feature a fixed shape (what TFDV infers from such a TFRecord); a
    served row with a missing step is that row with the step masked, not a NaN answer."""
    from conftest import prepare
    from tft_harness import serialize

    from trainer.export import export
    from trainer.model import build_model, compile_model

    instances = float_list_instances()
    if layout == "var_len":
        instances[3]["gyroscope"] = instances[3]["gyroscope"][:90]  # 30 steps
        feature_spec = FLOAT_LISTS
    else:
        instances[3]["gyroscope"][3:6] = np.nan  # step 1 missing
        feature_spec = {**FLOAT_LISTS, "gyroscope": tf.io.FixedLenFeature([300], tf.float32)}
    spec = motions_spec("gyro", "gyroscope", data_format="tfrecord")
    p = prepare(spec, instances, feature_spec, tmp_path)
    model = compile_model(build_model(spec, p.info), spec, p.info)
    export(model, p.tft_output, spec, p.info, str(tmp_path / "export"))
    loaded = tf.saved_model.load(str(tmp_path / "export"))
    padded = np.full((4, 100, 3), np.nan, np.float32)
    for n in range(4):
        steps = instances[n]["gyroscope"].reshape(-1, 3)
        padded[n, : len(steps)] = steps
    served = loaded.signatures["serving_raw"](gyro=tf.constant(padded))["intense"].numpy()
    examples = tf.constant([serialize(i, feature_spec) for i in instances[:4]])
    expected = loaded.signatures["serving_default"](examples=examples)["intense"].numpy()
    np.testing.assert_allclose(served, expected, atol=1e-6)
    assert not np.isnan(served).any()
    assert len(np.unique(np.round(expected, 6))) > 1  # the rows differ, and so do the answers

    # The MLflow model takes the TFRecord's float lists as they are (an Array(double) column).
    import pandas as pd
    from mlflow.exceptions import MlflowException

    lists = [[float(v) for v in i["gyroscope"]] for i in instances[:4]]
    model = mlflow_model(tmp_path / "export", spec, pd.DataFrame({"gyroscope": lists[:2]}))
    answers = model.predict(pd.DataFrame({"gyroscope": lists, "id": range(4)}))
    np.testing.assert_allclose(answers["intense"], expected[:, 0], atol=1e-6)
    missing = model.predict(pd.DataFrame({"gyroscope": [None, lists[0]]}))["intense"]
    assert np.isfinite(missing).all()  # no signal: the tower's missing path
    with pytest.raises(MlflowException, match=r"column 'gyroscope' holds 299 values in row 1"):
        model.predict(pd.DataFrame({"gyroscope": [lists[0], lists[0][:299]]}))


def gate(spec, stats_list):
    """The data gate's errors on TFDV's statistics and inferred schema."""
    import tensorflow_data_validation as tfdv

    from components.data_gate import check_data

    schema = tfdv.infer_schema(stats_list)
    errors, _ = check_data(spec, schema, {"train": stats_list.datasets[0]}, {})
    return errors


@pytest.mark.parametrize("channels", [3, 2, 6])
def test_data_gate_stops_csv_cells_whose_steps_are_not_the_declared_channels(channels):
    """Steps that do not read as `channels` numbers would all be masked: the input silently
    absent. The gate names the file, the line, the column and what the steps hold (3 values:
    the recordings have 3 axes)."""
    import pandas as pd
    import tensorflow_data_validation as tfdv

    frame = pd.read_csv(MOTIONS_CSV, keep_default_na=False)
    errors = gate(motions_spec(channels=channels), tfdv.generate_statistics_from_dataframe(frame))
    if channels == 3:
        assert errors == []
        return
    (error,) = errors
    assert error.startswith(
        f"{MOTIONS_CSV}: column 'accelerometer' (input 'accelerometer', a signal of "
        f"channels: {channels}): only 0 of the 8000 steps of its first 80 cell(s) read as "
        f"{channels} number(s) separated by ',' (steps separated by ';'); most steps hold 3 "
        f"value(s), e.g. {MOTIONS_CSV} line 2: '0.079106,0.394032,0.551444'"
    )


def test_data_gate_stops_float_lists_that_are_not_whole_steps(tmp_path):
    """A TFRecord float list of 300 values is 100 steps of 3 channels, not steps of 7."""
    import tensorflow_data_validation as tfdv
    from tft_harness import serialize

    path = str(tmp_path / "gyro.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for instance in float_list_instances():
            writer.write(serialize(instance, FLOAT_LISTS))
    stats_list = tfdv.generate_statistics_from_tfrecord(path)
    assert gate(motions_spec("gyro", "gyroscope", channels=3), stats_list) == []
    (error,) = gate(motions_spec("gyro", "gyroscope", channels=7), stats_list)
    assert "column 'gyroscope' (input 'gyro', a signal of channels: 7) holds lists of 300" in error
    assert "300 is not a multiple of 7" in error


AXES = ("acc_x", "acc_y", "acc_z")


def axis_rows():
    """The motions rows with the accelerometer also as one column per axis (a cell of steps)."""
    rows, kinds = read_csv_columns(MOTIONS_CSV)
    for row, steps in zip(rows, cells("accelerometer"), strict=True):
        for n, axis in enumerate(AXES):
            row[axis] = ";".join(repr(step[n]) for step in steps)
    return rows, {**kinds, **dict.fromkeys(AXES, "bytes")}


def test_columns_as_channels_read_as_one_cell_of_every_channel(tmp_path):
    """`columns: [acc_x, acc_y, acc_z]` (a cell per axis) is the same signal as the cell of all
    three; a step one axis lacks is a missing step; serving_raw takes a cell per channel and
    answers as serving_default does."""
    from conftest import prepare
    from tft_harness import serialize

    from trainer.export import export
    from trainer.model import build_model, compile_model

    rows, kinds = axis_rows()
    instances, feature_spec = tft_examples(rows, kinds)
    whole, _ = run_transform(motions_spec(), instances, feature_spec, str(tmp_path / "whole"))
    spec = motions_spec("acc", columns=list(AXES))
    assert spec.inputs[0].options["channels"] == 3 and spec.inputs[0].columns == AXES
    split, _ = run_transform(spec, instances, feature_spec, str(tmp_path / "split"))
    np.testing.assert_allclose(split["acc"], whole["accelerometer"], atol=1e-5)
    np.testing.assert_array_equal(split["acc_mask"], whole["accelerometer_mask"])

    steps = rows[4]["acc_y"].split(";")
    steps[7] = "?"
    rows[4]["acc_y"] = ";".join(steps)
    instances, feature_spec = tft_examples(rows, kinds)
    p = prepare(spec, instances, feature_spec, tmp_path / "prepared")
    assert p.tft_output.transform_raw_features(
        {c: tf.constant([[rows[4][c].encode()]]) for c in AXES}
    )["acc_mask"].numpy()[0, 6:9].tolist() == [1.0, 0.0, 1.0]
    model = compile_model(build_model(spec, p.info), spec, p.info)
    export(model, p.tft_output, spec, p.info, str(tmp_path / "export"))
    loaded = tf.saved_model.load(str(tmp_path / "export"))
    axes = tf.constant([[rows[n][c] for c in AXES] for n in range(6)])
    served = loaded.signatures["serving_raw"](acc=axes)["intense"].numpy()
    examples = tf.constant([serialize(i, feature_spec) for i in instances[:6]])
    expected = loaded.signatures["serving_default"](examples=examples)["intense"].numpy()
    np.testing.assert_allclose(served, expected, atol=1e-6)
    assert len(np.unique(np.round(expected, 6))) > 1
    # The MLflow model takes the three columns.
    import pandas as pd

    frame = pd.DataFrame([{c: rows[n][c] for c in AXES} for n in range(6)])
    model = mlflow_model(tmp_path / "export", spec, frame[:2])
    np.testing.assert_allclose(model.predict(frame)["intense"], expected[:, 0], atol=1e-6)


def mlflow_model(export_dir, spec, example):
    """The SavedModel logged as the pusher logs it (a local tracking store), loaded back."""
    import mlflow

    from components.mlflow_model import log_pyfunc_model

    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"file://{export_dir}/../mlruns")
    # An experiment of this store: MLflow keeps the process's active experiment id, which an
    # earlier push in this process set in another store.
    mlflow.set_experiment("signal")
    try:
        with mlflow.start_run():
            info = log_pyfunc_model(str(export_dir), spec, input_example=example)
        return mlflow.pyfunc.load_model(info.model_uri)
    finally:
        mlflow.set_tracking_uri(before)


def test_columns_set_channels_and_each_column_is_checked_by_the_data_gate(tmp_path):
    import pandas as pd
    import tensorflow_data_validation as tfdv

    from pipeline.spec import SpecError

    with pytest.raises(SpecError, match=r"channels: is 2, but `columns` lists 3"):
        motions_spec("acc", columns=list(AXES), channels=2)
    rows, _ = axis_rows()
    frame = pd.DataFrame(rows).astype({"intense": int})
    path = tmp_path / "axes.csv"
    frame.to_csv(path, index=False)
    spec = motions_spec("acc", path=path, columns=list(AXES))
    assert gate(spec, tfdv.generate_statistics_from_dataframe(frame)) == []
    # acc_y holding every axis (a cell of 3-value steps) is not one channel.
    frame["acc_y"] = frame["accelerometer"]
    frame.to_csv(path, index=False)
    (error,) = gate(spec, tfdv.generate_statistics_from_dataframe(frame))
    assert "column 'acc_y' (input 'acc', a signal of channels: 1): only 0 of the" in error

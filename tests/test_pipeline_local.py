"""The data half of the real local pipeline (LocalDagRunner, SQLite ML Metadata) on fixtures."""

import glob
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import tensorflow as tf
import yaml
from conftest import MOVIES_FIXTURE_CSV, MOVIES_FIXTURE_SPEC, REPO, TEST_BEAM_ARGS

from pipeline.local import latest_run_outputs, run_local
from pipeline.spec import load_spec
from preprocessing.heads import label_name

DATA_COMPONENTS = [
    "CsvExampleGen",
    "StatisticsGen",
    "SchemaGen",
    "ExampleValidator",
    "DataGate",
    "Transform",
]


@pytest.fixture(scope="module")
def movies_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("movies_run")
    spec = load_spec(MOVIES_FIXTURE_SPEC)
    paths = run_local(spec, str(out), beam_args=TEST_BEAM_ARGS)
    return spec, paths, latest_run_outputs(paths.metadata_path)


def test_every_artifact_recorded_in_ml_metadata(movies_run):
    spec, paths, outputs = movies_run
    assert os.path.isfile(paths.metadata_path)
    assert paths.metadata_path.startswith(os.path.dirname(os.path.dirname(paths.pipeline_root)))
    for component in DATA_COMPONENTS:
        assert component in outputs, f"{component} did not run"
    expected = {
        "CsvExampleGen": ["examples"],
        "StatisticsGen": ["statistics"],
        "SchemaGen": ["schema"],
        "ExampleValidator": ["anomalies"],
        "Transform": ["transformed_examples", "transform_graph", "post_transform_schema"],
    }
    for component, keys in expected.items():
        for key in keys:
            (artifact,) = outputs[component][key]
            assert artifact.uri.startswith(paths.pipeline_root)
            assert tf.io.gfile.listdir(artifact.uri), f"{component}.{key} is empty"
    splits = sorted(os.listdir(outputs["CsvExampleGen"]["examples"][0].uri))
    assert splits == ["Split-eval", "Split-train"]


def test_transformed_examples_hold_every_input_and_label(movies_run):
    spec, _, outputs = movies_run
    graph_uri = outputs["Transform"]["transform_graph"][0].uri
    import tensorflow_transform as tft

    tft_output = tft.TFTransformOutput(graph_uri)
    feature_spec = tft_output.transformed_feature_spec()
    expected = set()
    from preprocessing import MODALITIES

    for i in spec.inputs:
        expected |= set(MODALITIES[i.modality].output_names(i.name, i.options))
    expected |= {label_name(o.name) for o in spec.outputs}
    expected |= {f"slice_{s.name}" for s in spec.slices}
    assert set(feature_spec) == expected
    counts = {}
    for split in ("train", "eval"):
        uri = outputs["Transform"]["transformed_examples"][0].uri
        files = glob.glob(os.path.join(uri, f"Split-{split}", "*"))
        data = tf.data.TFRecordDataset(files, compression_type="GZIP")
        batch = next(iter(data.batch(1000).map(lambda x: tf.io.parse_example(x, feature_spec))))
        counts[split] = int(batch["year"].shape[0])
        assert batch["genre_label"].shape[1] == 21
        assert set(batch["oscar_label"].numpy().tolist()) <= {0.0, 1.0}
        assert batch["cast"].shape[1] == 16
    # The whole fixture, split about 4:1 by hashing the film ID.
    assert counts["train"] + counts["eval"] == len(pd.read_csv(MOVIES_FIXTURE_CSV))
    assert 0.65 < counts["train"] / (counts["train"] + counts["eval"]) < 0.92


def test_bad_column_stops_run_before_transform(movies_run, tmp_path):
    """A wrong-typed column against the curated schema: readable error, no Transform."""
    _, _, outputs = movies_run
    curated = tmp_path / "schema.pbtxt"
    shutil.copy(os.path.join(outputs["SchemaGen"]["schema"][0].uri, "schema.pbtxt"), curated)
    frame = pd.read_csv(MOVIES_FIXTURE_CSV, dtype=str, keep_default_na=False)
    frame.loc[4, "Runtime"] = "two hours"
    frame.to_csv(tmp_path / "movies.csv", index=False)
    with open(MOVIES_FIXTURE_SPEC) as f:
        raw = yaml.safe_load(f)
    raw["name"] = "movies_bad"
    raw["data"].update(path="movies.csv", schema="schema.pbtxt")
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(raw))

    env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "run",
            "--spec",
            str(tmp_path / "spec.yaml"),
            "--output",
            str(tmp_path / "runs"),
            *[f"--beam-arg={a}" for a in TEST_BEAM_ARGS],
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 3, result.stderr[-3000:]
    err = result.stderr
    assert "stopped before Transform" in err
    bad_csv = str(tmp_path / "movies.csv")
    # ExampleValidator's anomaly against the curated schema, with the file, line and column.
    assert (
        f"{bad_csv} (split 'train'): column 'Runtime': Unexpected data type: Expected data "
        "of type: INT but got STRING"
    ) in err
    assert f"{bad_csv} line 6: 'two hours'" in err
    assert "Traceback" not in err
    outputs = latest_run_outputs(str(tmp_path / "runs" / "metadata" / "movies_bad" / "metadata.db"))
    assert "ExampleValidator" in outputs
    assert "Transform" not in outputs

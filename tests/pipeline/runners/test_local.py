"""The data half of the real local pipeline (LocalDagRunner, SQLite ML Metadata) on fixtures."""

import glob
import json
import os
import shutil
import subprocess
import sys

import browser
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import yaml
from conftest import (
    DIGITS_FIXTURE_SPEC,
    MOVIES_FIXTURE_CSV,
    REPO,
)
from helpers import MESSY_LABELS, cli_run

from pipeline.evaluation.report import load_training_report
from pipeline.runners.local import latest_run_outputs, run_local
from pipeline.spec import load_spec
from preprocessing.heads import label_name

MOTIONS_SPEC = os.path.join(REPO, "data", "motions", "motions.yaml")

# Whole pipeline runs: skipped by `make test-fast`.
pytestmark = pytest.mark.e2e

COMPONENTS = [
    "CsvExampleGen",
    "StatisticsGen",
    "SchemaGen",
    "ExampleValidator",
    "DataGate",
    "Transform",
    "Trainer",
    "Evaluator",
    "BoostedTrainer",
    "BoostedEvaluator",
    "RegistryPusher",
]


def test_a_run_killed_in_transform_is_cleaned_up_by_the_next(killed_run, movies_run):
    """The killed run's Transform execution is marked canceled and its half-written folders are
    gone; the next run (movies_run) finished with outputs of its own."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2
    from tfx import v1 as tfx

    _, _, left = killed_run
    spec, paths, outputs = movies_run
    assert left, "the killed Transform had started writing its outputs"
    transform = os.path.join(paths.pipeline_root, "Transform")
    assert not set(left) & set(glob.glob(os.path.join(transform, "*", "*")))
    assert not os.listdir(os.path.join(transform, ".system", "stateful_working_dir"))
    assert outputs["Transform"]["transform_graph"][0].uri not in left
    store = metadata_store.MetadataStore(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(paths.metadata_path)
    )
    states = {e.id: e.last_known_state for e in store.get_executions()}
    killed = [int(os.path.basename(f)) for f in left]
    assert {states[i] for i in killed} == {metadata_store_pb2.Execution.CANCELED}
    assert metadata_store_pb2.Execution.RUNNING not in states.values()


def test_beam_steps_ran_as_jobs_on_the_job_server(movies_run, beam_job_server, beam_worker_pool):
    """Every Beam component ran as a job of the job server, in SDK workers the pool started."""
    jobs = beam_job_server[1].read_text()
    workers = beam_worker_pool[1].read_text()
    # CsvExampleGen, StatisticsGen, Transform, Evaluator; the killed run's jobs ran LOOPBACK,
    # in its own process, so every worker the pool started was this run's.
    assert jobs.count("with state DONE") >= 4, jobs[-3000:]
    assert workers.count("Starting worker with command") >= 4, workers[-3000:]


def test_every_artifact_recorded_in_ml_metadata(movies_run):
    spec, paths, outputs = movies_run
    assert os.path.isfile(paths.metadata_path)
    assert paths.metadata_path.startswith(os.path.dirname(os.path.dirname(paths.pipeline_root)))
    for component in COMPONENTS:
        assert component in outputs, f"{component} did not run"
    expected = {
        "CsvExampleGen": ["examples"],
        "StatisticsGen": ["statistics"],
        "SchemaGen": ["schema"],
        "ExampleValidator": ["anomalies"],
        "Transform": ["transformed_examples", "transform_graph"],
        "Trainer": ["model", "model_run"],
        "Evaluator": ["evaluation", "blessing"],
        "BoostedTrainer": ["model", "model_run"],
        "BoostedEvaluator": ["evaluation", "blessing"],
        "RegistryPusher": ["pushed_model"],
    }
    for component, keys in expected.items():
        for key in keys:
            (artifact,) = outputs[component][key]
            assert artifact.uri.startswith(paths.pipeline_root)
            assert tf.io.gfile.listdir(artifact.uri), f"{component}.{key} is empty"
    splits = sorted(os.listdir(outputs["CsvExampleGen"]["examples"][0].uri))
    assert splits == ["Split-eval", "Split-train", "Split-validation"]


def test_transformed_examples_hold_every_input_and_label(movies_run):
    spec, _, outputs = movies_run
    graph_uri = outputs["Transform"]["transform_graph"][0].uri
    import tensorflow_transform as tft

    tft_output = tft.TFTransformOutput(graph_uri)
    feature_spec = tft_output.transformed_feature_spec()
    expected = set()
    from preprocessing import MODALITIES

    for i in spec.inputs:
        expected |= set(MODALITIES[i.modality].output_names(i))
    expected |= {label_name(o.name) for o in spec.outputs}
    expected |= {o.label_present for o in spec.outputs}
    expected |= {f"slice_{s.name}" for s in spec.slices}
    assert set(feature_spec) == expected
    counts = {}
    for split in ("train", "validation", "eval"):
        uri = outputs["Transform"]["transformed_examples"][0].uri
        files = glob.glob(os.path.join(uri, f"Split-{split}", "*"))
        data = tf.data.TFRecordDataset(files, compression_type="GZIP")
        batch = next(iter(data.batch(1000).map(lambda x: tf.io.parse_example(x, feature_spec))))
        counts[split] = int(batch["year"].shape[0])
        assert batch["genre_label"].shape[1] == 21
        assert set(batch["oscar_label"].numpy().tolist()) <= {0.0, 1.0}
        assert batch["cast"].shape[1] == 16
    # The whole fixture, split about 7:1:2 by hashing the film ID.
    assert sum(counts.values()) == len(pd.read_csv(MOVIES_FIXTURE_CSV))
    assert 0.6 < counts["train"] / sum(counts.values()) < 0.8
    assert 0.04 < counts["validation"] / sum(counts.values()) < 0.18


def test_bad_column_stops_run_before_transform(movies_run, tmp_path):
    """A wrong-typed column against the curated schema: readable error, no Transform."""
    spec, _, outputs = movies_run
    curated = tmp_path / "schema.pbtxt"
    shutil.copy(os.path.join(outputs["SchemaGen"]["schema"][0].uri, "schema.pbtxt"), curated)
    with open(spec.source, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    frame = pd.read_csv(raw["data"]["path"], dtype=str, keep_default_na=False)
    frame.loc[4, "Runtime (min)"] = "two hours"
    frame.to_csv(tmp_path / "movies.csv", index=False)
    raw["name"] = "movies_bad"
    raw["data"].update(path="movies.csv", schema="schema.pbtxt")
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True))

    result = cli_run(tmp_path / "spec.yaml", tmp_path / "runs", timeout=900)
    assert result.returncode == 3, result.stderr[-3000:]
    err = result.stderr
    assert "stopped before Transform" in err
    bad_csv = str(tmp_path / "movies.csv")
    # ExampleValidator's anomaly against the curated schema, with the file, line and column.
    assert (
        f"{bad_csv} (split 'train'): column 'Runtime (min)': Unexpected data type: Expected "
        "data of type: FLOAT but got STRING"
    ) in err
    assert f"{bad_csv} line 6: 'two hours'" in err
    assert "Traceback" not in err
    outputs = latest_run_outputs(str(tmp_path / "runs" / "metadata" / "movies_bad" / "metadata.db"))
    assert "ExampleValidator" in outputs
    assert "Transform" not in outputs


def raw_eval_examples(outputs, drop_columns=(), limit=40):
    uri = outputs[next(c for c in outputs if c.endswith("ExampleGen"))]["examples"][0].uri
    files = glob.glob(os.path.join(uri, "Split-eval", "*"))
    records = []
    for r in tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit):
        example = tf.train.Example.FromString(r.numpy())
        for column in drop_columns:
            if column in example.features.feature:  # a missing label is an absent feature
                del example.features.feature[column]
        records.append(example.SerializeToString())
    return records


def load_served(outputs):
    model_uri = outputs["Trainer"]["model"][0].uri
    return tf.saved_model.load(os.path.join(model_uri, "Format-Serving"))


def test_exported_model_serves_every_head_from_raw_examples(movies_run):
    spec, _, outputs = movies_run
    served = load_served(outputs)
    assert {"serving_default", "serving_raw", "transform_features"} <= set(served.signatures)
    labels = [o.column for o in spec.outputs]
    examples = raw_eval_examples(outputs, drop_columns=labels)  # no labels needed
    out = served.signatures["serving_default"](examples=tf.constant(examples))
    n = len(examples)
    assert out["meter"].shape == (n, 1) and np.all(np.isfinite(out["meter"].numpy()))
    oscar, genre = out["oscar"].numpy(), out["genre"].numpy()
    assert oscar.shape == (n, 1) and genre.shape == (n, 21)
    assert np.all((oscar >= 0) & (oscar <= 1)) and np.all((genre >= 0) & (genre <= 1))
    names = out["genre_labels"].numpy()
    assert names.shape == (n, 21)
    classes = spec.outputs[2].options["classes"]
    for row_p, row_names in zip(genre, names, strict=True):
        expect = [c.encode() if p > 0.5 else b"" for c, p in zip(classes, row_p, strict=True)]
        assert list(row_names) == expect
    # The same predictions through the tensor-input signature (TF Serving's REST API).
    parsed = [tf.train.Example.FromString(e) for e in examples[:3]]

    def value(example, column, dtype):
        f = example.features.feature[column]
        kind = f.WhichOneof("kind")
        values = list(getattr(f, kind).value) if kind else []
        if dtype == tf.string:
            return values[0] if values else b""
        return values[0] if values else float("nan")  # serving_raw's "missing" for a number

    raw_fn = served.signatures["serving_raw"]
    column = {i.name: i.column for i in spec.inputs}
    kwargs = {}
    for name, spec_ in raw_fn.structured_input_signature[1].items():
        kwargs[name] = tf.constant(
            [value(e, column[name], spec_.dtype) for e in parsed], dtype=spec_.dtype
        )
    assert set(kwargs) == set(column)
    raw_out = raw_fn(**kwargs)
    assert np.allclose(raw_out["meter"].numpy(), out["meter"].numpy()[:3], atol=1e-3)
    assert np.allclose(raw_out["genre"].numpy(), genre[:3], atol=1e-4)
    # transform_features, for TFMA: transformed labels and slices from full raw examples.
    transformed = served.signatures["transform_features"](
        examples=tf.constant(raw_eval_examples(outputs, limit=5))
    )
    assert {"meter_label", "oscar_label", "genre_label", "slice_decade"} <= set(transformed)


def test_numbers_stay_float_and_awkward_columns_serve_by_input_name(movies_run):
    """'Runtime (min)' held only integers (and NA tokens) in training; the schema, the parser and
    both signatures take 181.5, and serving_raw names it by its input name, `runtime`."""
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tfx.utils import io_utils

    spec, _, outputs = movies_run
    cells = pd.read_csv(spec.data.path, dtype=str, keep_default_na=False)["Runtime (min)"]
    assert {"NA"} < set(cells) and all(c.isdigit() for c in cells if c not in ("", "NA"))
    schema = io_utils.parse_pbtxt_file(
        os.path.join(outputs["SchemaGen"]["schema"][0].uri, "schema.pbtxt"), schema_pb2.Schema()
    )
    types = {f.name: f.type for f in schema.feature}
    assert types["Runtime (min)"] == schema_pb2.FLOAT and types["Tomato meter"] == schema_pb2.FLOAT
    assert types["MPAA/rating"] == schema_pb2.BYTES

    served = load_served(outputs)
    examples = [tf.train.Example.FromString(e) for e in raw_eval_examples(outputs, limit=4)]
    for e in examples:
        e.features.feature["Runtime (min)"].float_list.value[:] = [181.5]
    by_example = served.signatures["serving_default"](
        examples=tf.constant([e.SerializeToString() for e in examples])
    )
    raw_fn = served.signatures["serving_raw"]
    names = set(raw_fn.structured_input_signature[1])
    assert names == {i.name for i in spec.inputs}  # identifiers, not 'Runtime (min)'

    def cell(example, column, dtype):
        feature = example.features.feature.get(column)
        kind = feature.WhichOneof("kind") if feature is not None else None
        values = list(getattr(feature, kind).value) if kind else []
        if values:
            return values[0]
        return b"" if dtype == tf.string else float("nan")  # the documented "missing"

    kwargs = {}
    for i in spec.inputs:
        dtype = raw_fn.structured_input_signature[1][i.name].dtype
        kwargs[i.name] = tf.constant([cell(e, i.column, dtype) for e in examples], dtype=dtype)
    assert kwargs["runtime"].dtype == tf.float32
    by_name = raw_fn(**kwargs)
    for head in ("meter", "oscar", "genre"):
        assert np.all(np.isfinite(by_example[head].numpy()))
        assert np.allclose(by_name[head].numpy(), by_example[head].numpy(), atol=1e-4), head
    # A number never missing in training (a FixedLen column) has no learned "missing": a NaN
    # there answers NaN in every head for that row, on every machine, never a silent number.
    transform_output = tft.TFTransformOutput(outputs["Transform"]["transform_graph"][0].uri)
    always = [
        i.name
        for i in spec.inputs
        if isinstance(transform_output.raw_feature_spec()[i.column], tf.io.FixedLenFeature)
        and kwargs[i.name].dtype == tf.float32
    ]
    assert always, "the fixture has a number that is never missing"
    gap = dict(kwargs)
    gap[always[0]] = tf.tensor_scatter_nd_update(kwargs[always[0]], [[1]], [float("nan")])
    answered = raw_fn(**gap)
    assert list(answered["genre_labels"].numpy()[1]) == [b""] * 21
    for head in ("meter", "oscar", "genre"):
        values = answered[head].numpy().reshape(len(examples), -1)
        assert np.all(np.isnan(values[1])), head
        rest = np.delete(values, 1, axis=0)
        expected = np.delete(by_name[head].numpy().reshape(len(examples), -1), 1, axis=0)
        assert np.allclose(rest, expected, atol=1e-5), head


def test_the_run_report_opens_in_a_browser_with_every_head_and_every_plot(movies_run, tmp_path):
    """report.html of the shared run in headless Chromium: no console error, a section per head
    with its gate table, every plot image decoded (natural width > 0), nothing fetched from the
    network; `mimo report --run` prints its path."""
    spec, paths, outputs = movies_run
    path = os.path.join(outputs["RunReport"]["report"][0].uri, "report.html")
    if browser.CHROMIUM is None:
        pytest.skip(
            "NO BROWSER: Debian's chromium is not installed and `make test` could not install "
            "it (apt-get install chromium); the report's browser test did not run"
        )
    page, seconds = browser.open_page(path, screenshot=str(tmp_path / "report.png"))
    try:
        found = page.evaluate(
            """({
            heads: [...document.querySelectorAll('section.head')].map(s => s.id),
            gates: document.querySelectorAll('section.head table').length,
            images: [...document.images].map(i => [i.alt, i.complete && i.naturalWidth]),
            external: [...document.querySelectorAll('[src],[href]')]
                .map(e => e.getAttribute('src') || e.getAttribute('href'))
                .filter(u => /^(https?:)?[/][/]/.test(u)),
            scripts: document.scripts.length,
            gbdt: [...document.querySelectorAll('section.head table')]
                .filter(t => t.rows[0].innerText.includes('gbdt')).length,
            rival: [...document.querySelectorAll('#model h3')].map(h => h.innerText),
            })"""
        )
        errors = page.errors()
    finally:
        browser.close(page)
    print(
        f"report: {os.path.getsize(path) // 1024} kB, loaded in {seconds:.2f} s, "
        f"{len(found['images'])} plots"
    )
    assert errors == []
    assert found["heads"] == [f"head-{h.name}" for h in spec.outputs]
    assert found["gates"] >= len(spec.outputs)
    assert found["external"] == [] and found["scripts"] == 0
    # The boosted rival: a gbdt column in every head's gate table, its cost under the model.
    assert found["gbdt"] == len(spec.outputs)
    assert any(h.startswith("Boosted rival (gbdt)") for h in found["rival"]), found["rival"]
    alts = [alt for alt, _ in found["images"]]
    assert all(width and width > 0 for _, width in found["images"]), found["images"]
    # What each head type asks for: curves and slices for all, ROC/PR and reliability for the
    # binary head, AUC per label for the multilabel one, predicted vs actual for the regression.
    for expected in (
        "meter: learning curves",
        "meter: predicted vs actual by slice",
        "oscar: ROC",
        "oscar: precision-recall",
        "oscar: reliability diagram",
        "genre: AUC per label",
        "genre: learning curves",
    ):
        assert expected in alts, (expected, alts)
    assert any(a.endswith("by slice") and a.startswith("oscar") for a in alts)
    assert os.path.getsize(tmp_path / "report.png") > 10_000
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "report", "--run", os.path.dirname(spec.source)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == path
    # The published version carries it too (the shared run published version 2).
    registry = os.path.join(os.path.dirname(spec.source), "registry")
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "report", "--model", spec.name]
        + ["--registry", registry],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == os.path.join(registry, spec.name, "2", "report.html")
    with open(result.stdout.strip(), encoding="utf-8") as copy, open(path, encoding="utf-8") as f:
        assert copy.read() == f.read()


def test_training_report_compares_every_head_with_its_trivial_baseline(movies_run):
    spec, _, outputs = movies_run
    report = load_training_report(outputs["Trainer"]["model_run"][0].uri)
    assert set(report["heads"]) == {"meter", "oscar", "genre"}
    # The baselines are the trivial predictors, recomputed here from the transformed labels.
    import tensorflow_transform as tft

    uri = outputs["Transform"]["transformed_examples"][0].uri
    graph = tft.TFTransformOutput(outputs["Transform"]["transform_graph"][0].uri)
    label_spec = {
        k: v
        for k, v in graph.transformed_feature_spec().items()
        if k.startswith(("meter_label", "oscar_label"))
    }
    labels = {}
    for split in ("train", "validation"):  # the training report's: never eval
        files = glob.glob(os.path.join(uri, f"Split-{split}", "*"))
        data = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(1000)
        batch = next(iter(data.map(lambda x: tf.io.parse_example(x, label_spec))))
        present = {h: batch[f"{h}_label_present"].numpy() > 0.5 for h in ("meter", "oscar")}
        labels[split] = {
            f"{h}_label": batch[f"{h}_label"].numpy()[present[h]] for h in ("meter", "oscar")
        }
    meter_train, meter_valid = labels["train"]["meter_label"], labels["validation"]["meter_label"]
    meter = report["heads"]["meter"]
    assert meter["baseline"]["mae"] == pytest.approx(
        np.abs(meter_valid - meter_train.mean()).mean(), rel=1e-5
    )
    oscar_rate = labels["validation"]["oscar_label"].mean()
    assert report["heads"]["oscar"]["baseline"]["accuracy"] == pytest.approx(
        max(oscar_rate, 1 - oscar_rate), rel=1e-5
    )
    # Oscar (a strong signal) beats its trivial predictor on its primary metric and its loss.
    # On 320 training and ~75 eval rows the meter and genre heads stay near their trivial
    # predictors (measured: meter MAE 21.8-23.5 vs 22.6, genre loss 5.26-5.36 vs 5.30); a broken
    # head (a wrong scale, a label mix-up) lands far from them, which these bounds catch.
    for head in spec.outputs:
        h = report["heads"][head.name]
        assert all(np.isfinite(v) for v in h["metrics"].values())
        metric = head.head_type.primary
        model, trivial = h["metrics"][metric], h["baseline"][metric]
        slack = 0.0 if head.name == "oscar" else 0.1 * abs(trivial)
        if h["higher_is_better"][metric]:
            assert model > trivial - slack, f"{head.name} {metric}: {model:.4f} vs {trivial:.4f}"
        else:
            assert model < trivial + slack, f"{head.name} {metric}: {model:.4f} vs {trivial:.4f}"
        if "loss" in h["baseline"]:
            loss, trivial_loss = h["metrics"]["loss"], h["baseline"]["loss"]
            assert loss < trivial_loss * (1.0 if head.name == "oscar" else 1.05), head.name
    assert report["epochs_run"] >= 1 and os.path.isdir(
        os.path.join(outputs["Trainer"]["model_run"][0].uri, "logs")
    )


def test_digits_pipeline_trains_the_image_tower(tmp_path):
    spec = load_spec(DIGITS_FIXTURE_SPEC)
    paths = run_local(spec, str(tmp_path))
    outputs = latest_run_outputs(paths.metadata_path)
    assert "ImportExampleGen" in outputs and "Trainer" in outputs
    report = load_training_report(outputs["Trainer"]["model_run"][0].uri)
    digit = report["heads"]["digit"]
    # 320 training images, a small CNN: far better than guessing the most frequent digit.
    assert digit["metrics"]["accuracy"] > digit["baseline"]["accuracy"] + 0.3
    served = load_served(outputs)
    examples = raw_eval_examples(outputs, drop_columns=["digit", "odd"], limit=10)
    out = served.signatures["serving_default"](examples=tf.constant(examples))
    assert out["digit"].shape == (10, 10)
    assert np.allclose(out["digit"].numpy().sum(axis=1), 1, atol=1e-4)
    assert out["digit_class"].shape == (10,)
    assert set(out["digit_class"].numpy()) <= {str(i).encode() for i in range(10)}
    assert np.all((out["odd"].numpy() >= 0) & (out["odd"].numpy() <= 1))


def test_the_sensor_data_trains_two_signal_towers_and_pushes_a_model_serving_raw_cells(tmp_path):
    """The bundled BasicMotions spec (accelerometer and gyroscope signals, conv1d and GRU towers,
    gated fusion, two heads) end to end from its CSV cells: blessed, pushed, and serving_raw on
    the cells as the CSV has them answers what serving_default answers on the same rows."""
    with open(MOTIONS_SPEC) as f:
        raw = yaml.safe_load(f)
    raw["data"]["path"] = os.path.join(os.path.dirname(MOTIONS_SPEC), raw["data"]["path"])
    raw["training"]["epochs"] = 8
    raw["evaluation"] = {"baselines": []}
    (tmp_path / "motions.yaml").write_text(yaml.safe_dump(raw))
    spec = load_spec(str(tmp_path / "motions.yaml"))
    paths = run_local(spec, str(tmp_path / "runs"), registry=str(tmp_path / "registry"))
    outputs = latest_run_outputs(paths.metadata_path, paths.run_id)
    report = load_training_report(outputs["Trainer"]["model_run"][0].uri)
    activity = report["heads"]["activity"]
    assert activity["metrics"]["accuracy"] > activity["baseline"]["accuracy"] + 0.2, activity
    (pushed,) = outputs["RegistryPusher"]["pushed_model"]
    assert pushed.custom_properties["pushed"].int_value == 1
    served = load_served(outputs)
    records = raw_eval_examples(outputs, drop_columns=["activity", "intense"], limit=8)
    by_default = served.signatures["serving_default"](examples=tf.constant(records))
    examples = [tf.train.Example.FromString(r) for r in records]
    cells = {
        name: tf.constant([e.features.feature[name].bytes_list.value[0] for e in examples])
        for name in ("accelerometer", "gyroscope")
    }
    by_raw = served.signatures["serving_raw"](**cells)
    for head in ("activity", "intense"):
        np.testing.assert_allclose(by_raw[head].numpy(), by_default[head].numpy(), atol=1e-5)
    assert by_raw["activity"].shape == (len(records), 4)
    assert set(by_raw["activity_class"].numpy()) <= {
        b"Standing",
        b"Walking",
        b"Running",
        b"Badminton",
    }


def test_first_run_is_blessed_and_pushed_past_the_damaged_folders(movies_run, tmp_path, capsys):
    spec, paths, outputs = movies_run
    from components.registry import Registry
    from pipeline.cli import main

    blessing = outputs["Evaluator"]["blessing"][0]
    assert blessing.custom_properties["blessed"].int_value == 1
    root = os.path.join(os.path.dirname(os.path.dirname(paths.pipeline_root)), "registry")
    registry = Registry(root)
    # Folder 1 has no card: it is no version, and its number is not reused.
    assert registry.versions(spec.name) == [2]
    assert [
        (os.path.basename(d.path), d.reason.split(":")[0]) for d in registry.damaged(spec.name)
    ] == [
        ("1", "no model_card.json"),
        (".staging-killed", "an unfinished publish"),
    ]
    card = registry.card(spec.name, 2)
    assert card["spec_fingerprint"] == spec.fingerprint()
    # TF Serving's batching file beside the SavedModel (components/batching.py).
    with open(os.path.join(registry.path(spec.name, 2), "batching_parameters.txt")) as f:
        assert "max_batch_size { value: " in f.read()
    assert card["baseline"]["version"] is None  # the first run has no baseline
    assert card["data"]["input_fingerprint"]
    metrics = card["evaluation"]["metrics"]
    assert {"meter", "oscar", "genre"} <= set(metrics)
    assert "mean_absolute_error" in metrics["meter"]["overall"]
    assert any(k.startswith("slice_decade=") for k in metrics["meter"])  # per slice
    assert any(k.startswith("slice_mpaa=") for k in metrics["oscar"])
    assert "auc/macro" in metrics["genre"]["overall"]
    assert "auc/class_0" in metrics["genre"]["overall"]
    assert card["evaluation"]["validation"]["ok"] is True
    assert {g["head"] for g in card["gates"]} == {"meter", "oscar", "genre"}
    # `mimo models list` names both damaged folders and lists version 2 alone; gc (on a copy)
    # moves folder 1 aside and deletes the staging folder, and the listing is clean.
    assert main(["models", "list", "--registry", root]) == 0
    listed = capsys.readouterr()
    assert f"warning: {registry.model_dir(spec.name)}/1: no model_card.json" in listed.err
    assert "TF Serving serves the highest: 2" in listed.out
    copy = Registry(shutil.copytree(root, tmp_path / "registry"))
    assert main(["models", "gc", "--registry", copy.root]) == 0
    assert "deleted" in capsys.readouterr().out and not copy.damaged(spec.name)
    kept = os.listdir(copy.model_dir(spec.name))
    assert "1" not in kept and [n for n in kept if n.startswith(".damaged-1-")]
    assert copy.versions(spec.name) == [2] and not [n for n in kept if n.startswith(".staging")]
    # The published SavedModel, loaded from the registry, serves raw examples with every head.
    served = tf.saved_model.load(registry.path(spec.name, 2))
    examples = raw_eval_examples(outputs, drop_columns=[o.column for o in spec.outputs])
    out = served.signatures["serving_default"](examples=tf.constant(examples))
    assert {"meter", "oscar", "genre", "genre_labels"} <= set(out)
    assert out["genre"].shape == (len(examples), 21)


def test_compare_puts_every_head_against_single_head_models_and_boosted_trees(
    movies_run, portable_flags, tmp_path
):
    """`mimo compare` on a copy of the shared run's output: it reuses that run's Transform (a
    partial run up to it, nothing trained by the pipeline) and prints, per head, the eval-split
    metric of the multi-output model, a single-head model and boosted trees."""
    spec, paths, shared = movies_run
    output = str(tmp_path / "runs")
    shutil.copytree(os.path.dirname(os.path.dirname(paths.pipeline_root)), output)
    result = cli_run(spec.source, output, *portable_flags, command="compare")
    assert result.returncode == 0, result.stderr[-3000:]
    table = result.stdout[result.stdout.index("On the eval split") :].splitlines()
    assert table[1].split()[:2] == ["head", "metric"]
    rows = {line.split()[0]: line.split() for line in table[2:] if line.strip()}
    assert list(rows)[:4] == ["meter", "oscar", "genre", "(seconds)"]
    for head, low, high in (("meter", 1.0, 60.0), ("oscar", 0.0, 1.0), ("genre", 0.0, 1.0)):
        multi, single, boosted = (float(v) for v in rows[head][3:6])  # after "metric (dir)"
        assert all(low <= v <= high for v in (multi, single, boosted)), rows[head]
        assert rows[head][6].startswith(("+", "-")) and rows[head][7] in ("ok", "BEHIND")
    latest = latest_run_outputs(os.path.join(output, "metadata", spec.name, "metadata.db"))
    graph = latest["Transform"]["transform_graph"][0].uri
    assert graph == shared["Transform"]["transform_graph"][0].uri
    assert "Trainer" not in latest and "Evaluator" not in latest


def test_failing_gate_pushes_nothing_then_a_good_run_becomes_the_next_version(
    movies_run, portable_flags, tmp_path
):
    spec, paths, shared = movies_run
    from components.registry import Registry

    # Its own copy of the first run (ML Metadata, registry with version 2): the shared run stays
    # as it was, whatever order the tests run in. On the same Beam runner as that run, a changed
    # gate or learning rate reuses its cached ExampleGen and Transform (asserted below).
    output = str(tmp_path / "runs")
    shutil.copytree(os.path.dirname(os.path.dirname(paths.pipeline_root)), output)
    registry = Registry(os.path.join(output, "registry"))
    before = {
        d: os.stat(os.path.join(registry.model_dir(spec.name), d)).st_mtime
        for d in os.listdir(registry.model_dir(spec.name))
    }
    with open(spec.source, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    raw["outputs"][0]["gates"] = [{"metric": "mae", "max": 0.01}]  # impossible
    # Without the boosted rival (the shared run's test covers it): two runs' worth of its
    # evaluation saved.
    raw["evaluation"] = {"baselines": []}
    for head in raw["outputs"]:
        head["gates"] = [g for g in head["gates"] if "beats" not in g]
    (tmp_path / "impossible.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True))
    result = cli_run(tmp_path / "impossible.yaml", output, *portable_flags)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "NOT blessed" in result.stdout
    assert "- meter mae = " in result.stdout and "upper bound 0.01" in result.stdout
    assert "Nothing pushed: the registry is as it was." in result.stdout
    assert registry.versions(spec.name) == [2]
    after = {
        d: os.stat(os.path.join(registry.model_dir(spec.name), d)).st_mtime
        for d in os.listdir(registry.model_dir(spec.name))
    }
    assert after == before

    raw["outputs"][0]["gates"] = [{"metric": "mae", "max": 40.0, "max_regression": 10.0}]
    raw["training"]["learning_rate"] = 0.002  # a new model, compared with version 2
    (tmp_path / "retrain.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True))
    result = cli_run(tmp_path / "retrain.yaml", output, *portable_flags)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Blessed: every head passed its gates." in result.stdout, result.stdout[-3000:]
    # One line per epoch on the terminal, each head's watched validation metric on it.
    epoch_1 = next(line for line in result.stdout.splitlines() if "[Trainer] epoch 1/5" in line)
    assert all(f"val_{h.name}_" in epoch_1 for h in spec.outputs), epoch_1
    assert registry.versions(spec.name) == [2, 3]
    card = registry.card(spec.name, 3)
    assert card["baseline"]["version"] == 2
    assert "baseline:mean_absolute_error" in card["evaluation"]["metrics"]["meter"]["overall"]
    assert f"Pushed version 3: {registry.path(spec.name, 3)}" in result.stdout
    # The table shows the baseline's value next to the new one.
    meter_row = next(
        line
        for line in result.stdout.splitlines()
        if line.strip().startswith("meter") and "worse than baseline" in line
    )
    assert meter_row.split()[-1] == "pass"
    # Each run reports its own execution, not the newest: the first run is still found by its id.
    metadata = os.path.join(output, "metadata", spec.name, "metadata.db")
    first = latest_run_outputs(metadata, paths.run_id)
    assert paths.run_id and first["Trainer"]["model"][0].uri == shared["Trainer"]["model"][0].uri
    latest = latest_run_outputs(metadata)
    assert latest["Trainer"]["model"][0].uri != first["Trainer"]["model"][0].uri
    # A new model on the cached transform: changing gates and training settings re-runs neither
    # ExampleGen nor Transform.
    examples = latest["CsvExampleGen"]["examples"][0].uri
    assert examples == shared["CsvExampleGen"]["examples"][0].uri
    transform_graph = latest["Transform"]["transform_graph"][0].uri
    assert transform_graph == shared["Transform"]["transform_graph"][0].uri


def test_partial_labels_train_every_head_on_its_own_labelled_rows(movies_run):
    """Each head's label is blank on a different third of the rows: nothing is dropped, and each
    head's training report and TFMA counts use exactly its labelled rows: the Trainer's of the
    train and validation splits, the Evaluator's of the eval split only (the validation split,
    which chose the epoch, never reaches the Evaluator)."""
    from pipeline.evaluation.summary import EvaluationSummary

    _, _, outputs = movies_run
    # Labelled rows per head and split, counted in ExampleGen's own examples.
    labelled = {}
    for split in ("train", "validation", "eval"):
        uri = outputs["CsvExampleGen"]["examples"][0].uri
        files = glob.glob(os.path.join(uri, f"Split-{split}", "*"))
        counts = dict.fromkeys([c for c, _ in MESSY_LABELS] + ["rows"], 0)
        for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
            example = tf.train.Example.FromString(record.numpy())
            counts["rows"] += 1
            for column, _ in MESSY_LABELS:
                feature = example.features.feature.get(column)
                kind = feature.WhichOneof("kind") if feature is not None else None
                counts[column] += bool(kind and getattr(feature, kind).value)
        labelled[split] = counts
    original = pd.read_csv(MOVIES_FIXTURE_CSV, dtype=str, keep_default_na=False)
    assert sum(counts["rows"] for counts in labelled.values()) == len(original)
    # Every token (NA, N/A, null, NaN, None, empty) was read as missing, and nothing else was.
    for (column, part), source in zip(MESSY_LABELS, ("Meter", "Oscars", "Genre"), strict=True):
        expected = sum(i % 3 != part and v != "" for i, v in enumerate(original[source]))
        assert sum(counts[column] for counts in labelled.values()) == expected, column
    report = load_training_report(outputs["Trainer"]["model_run"][0].uri)
    summary = EvaluationSummary.from_tfma(outputs["Evaluator"]["evaluation"][0].uri)
    for head, (column, _) in zip(("meter", "oscar", "genre"), MESSY_LABELS, strict=True):
        assert report["heads"][head]["train_examples"] == labelled["train"][column], head
        assert report["heads"][head]["examples"] == labelled["validation"][column], head
        assert labelled["eval"][column] < 0.75 * labelled["eval"]["rows"]  # a third masked
        counts = summary.metrics[head]["overall"]
        weighted = counts.get(
            "weighted_example_count", counts.get("weighted_example_count/class_0")
        )
        assert weighted == pytest.approx(labelled["eval"][column]), (head, counts)
    # The boosted rival, evaluated by TFMA on the same rows: its counts are its labelled rows.
    rival = EvaluationSummary.from_tfma(
        outputs["Evaluator"]["evaluation"][0].uri,
        {"gbdt": outputs["BoostedEvaluator"]["evaluation"][0].uri},
    )
    for head, (column, _) in zip(("meter", "oscar", "genre"), MESSY_LABELS, strict=True):
        counts = rival.metrics[head]["overall"]
        weighted = counts.get(
            "gbdt:weighted_example_count", counts.get("gbdt:weighted_example_count/class_0")
        )
        assert weighted == pytest.approx(labelled["eval"][column]), (head, counts)


def test_the_boosted_rival_is_trained_evaluated_per_head_and_slice_and_gated(movies_run):
    """evaluation.baselines: gbdt. The BoostedTrainer's trees (one model per head, one per label
    of the multilabel head) are exported with the network's signatures; the BoostedEvaluator
    scores them beside the candidate on the eval split, per head and slice; the oscar head's
    `beats: gbdt` gate is a TFMA change threshold against them, and the pushed card keeps it."""
    from pipeline.evaluation.summary import OVERALL, EvaluationSummary

    spec, _, outputs = movies_run
    report = load_training_report(outputs["BoostedTrainer"]["model_run"][0].uri)
    assert report["kind"] == "gbdt" and report["seconds"] > 0
    assert [len(report["trees"][h]) for h in ("meter", "oscar", "genre")] == [1, 1, 21]
    assert set(report["validation"]) == {"meter", "oscar", "genre"}
    model = tf.saved_model.load(
        os.path.join(outputs["BoostedTrainer"]["model"][0].uri, "Format-Serving")
    )
    assert set(model.signatures) == {"serving_default", "transform_features"}
    files = glob.glob(os.path.join(outputs["CsvExampleGen"]["examples"][0].uri, "Split-eval", "*"))
    records = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP").take(5)]
    served = model.signatures["serving_default"](examples=tf.constant(records))
    assert served["meter"].shape == (5, 1) and served["genre"].shape == (5, 21)
    assert np.all((served["oscar"].numpy() >= 0) & (served["oscar"].numpy() <= 1))

    evaluator = outputs["BoostedEvaluator"]
    summary = EvaluationSummary.from_tfma(
        outputs["Evaluator"]["evaluation"][0].uri, {"gbdt": evaluator["evaluation"][0].uri}
    )
    assert summary.rival_names() == ["gbdt"]
    for head in spec.outputs:
        key = head.head_type.summary_key(head.head_type.primary)
        slices = summary.metrics[head.name]
        assert len(slices) > 3, slices.keys()  # overall and the declared slices' values
        for name, values in slices.items():
            if key in values:
                assert f"gbdt:{key}" in values, (head.name, name)
        assert summary.value(head.name, f"gbdt:{key}") != summary.value(head.name, key)
    (beats,) = [r for r in summary.gate_rows(spec) if r.beats_rival]
    assert (beats.head, beats.metric) == ("oscar", "auc")
    assert beats.baseline == summary.value("oscar", "gbdt:auc", OVERALL)
    assert beats.passed and "gbdt" in beats.threshold
    blessing = evaluator["blessing"][0]
    assert blessing.custom_properties["blessed"].int_value == 1  # the Pusher's condition
    assert summary.ok
    (pushed,) = outputs["RegistryPusher"]["pushed_model"]
    card_path = os.path.join(
        pushed.custom_properties["pushed_destination"].string_value, "model_card.json"
    )
    with open(card_path) as f:
        card = json.load(f)
    assert any(g["head"] == "oscar" and g.get("beats") == "gbdt" for g in card["gates"])
    assert "gbdt:auc" in card["evaluation"]["metrics"]["oscar"]["overall"]

"""MLflow registry push against a real MLflow tracking server (SQLite backend) on localhost, and
the registered model served by a real `mlflow models serve` process."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest
from conftest import MOVIES_FIXTURE_CSV, MOVIES_FIXTURE_SPEC
from helpers import MESSY_COLUMNS

from components.pusher import push_to_mlflow


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{root}/mlflow.db",
            "--artifacts-destination",
            f"file://{root}/artifacts",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(1)
        if proc.poll() is not None:
            raise RuntimeError((root / "server.log").read_text()[-3000:])
    else:
        raise RuntimeError("the MLflow server did not start in 120 s")
    yield uri
    os.killpg(proc.pid, 15)
    proc.wait(timeout=30)
    log.close()


def tiny_saved_model(path, marker):
    """A real, tiny SavedModel with a `serving_raw` signature as trainer/export.py names it
    (MLflow loads a pyfunc model when it logs it): meter = year * marker. `marker.txt` in it says
    which one it is, as the registry's model_card.json does."""
    import tensorflow as tf

    from components.contract import write_contract

    module = tf.Module()
    module.scale = tf.Variable(float(marker))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="year")])
    def serving_raw(year):
        return {"meter": tf.reshape(year * module.scale, [-1, 1])}

    tf.saved_model.save(module, str(path), signatures={"serving_raw": serving_raw})
    write_contract(str(path))
    (path / "marker.txt").write_text(str(marker))
    return str(path)


def card(version, mae, spec=None, examples_uri=None):
    from pipeline.spec import load_spec

    return {
        "version": version,
        "spec_fingerprint": "abc",
        "code_fingerprint": "def",
        "spec": spec or load_spec(MOVIES_FIXTURE_SPEC).to_dict(),
        "data": {"examples_uri": examples_uri},
        "evaluation": {
            "metrics": {
                "meter": {
                    "overall": {"mean_absolute_error": mae, "baseline:mean_absolute_error": 20},
                    "slice_decade=1990": {"mean_absolute_error": 30.0},
                },
                "genre": {"overall": {"auc/macro": 0.61}},
            }
        },
    }


def test_two_pushes_make_versions_1_and_2_and_move_the_alias(mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    model = tiny_saved_model(tmp_path / "model", 1)
    with open(os.path.join(model, "report.html"), "w") as f:  # as a registry version holds it
        f.write("<html>run report</html>")
    assert push_to_mlflow(mlflow_server, "movies", model, card(1, 19.0)) == "1"
    assert push_to_mlflow(mlflow_server, "movies", model, card(2, 18.5)) == "2"
    client = MlflowClient(tracking_uri=mlflow_server)
    versions = {v.version: v for v in client.search_model_versions("name='movies'")}
    assert set(versions) == {"1", "2"}
    assert client.get_model_version_by_alias("movies", "champion").version == "2"
    for number, mae in (("1", 19.0), ("2", 18.5)):
        run = client.get_run(versions[number].run_id)
        assert run.data.metrics["meter.mean_absolute_error"] == mae
        assert run.data.metrics["genre.auc.macro"] == pytest.approx(0.61)
        assert "meter.baseline:mean_absolute_error" not in run.data.metrics
        assert run.data.params["registry_version"] == number
        files = {f.path for f in client.list_artifacts(run.info.run_id, "model")}
        assert {"model/MLmodel", "model/python_model.pkl"} <= files  # an MLflow pyfunc model
        saved = {f.path for f in client.list_artifacts(run.info.run_id, "model/artifacts/model")}
        assert "model/artifacts/model/saved_model.pb" in saved
        # The run's report is the MLflow run's own artifact (its UI shows HTML).
        assert "report.html" in {f.path for f in client.list_artifacts(run.info.run_id)}


def test_the_champion_is_the_baseline_after_the_alias_moves_back(mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    from components.baseline import resolve_baseline
    from components.contract import SERVING_DIR

    assert resolve_baseline("", "films", mlflow_server, str(tmp_path / "none"))["found"] is False
    for number in (1, 2):
        model = tiny_saved_model(tmp_path / f"v{number}", number)
        push_to_mlflow(mlflow_server, "films", model, card(number, 19.0))
    MlflowClient(tracking_uri=mlflow_server).set_registered_model_alias("films", "champion", "1")
    out = str(tmp_path / "baseline")
    record = resolve_baseline("", "films", mlflow_server, out)
    assert record["found"] is True and record["mlflow_version"] == "1"
    with open(os.path.join(out, SERVING_DIR, "marker.txt")) as f:
        assert f.read() == "1"  # version 1's SavedModel, found inside the pyfunc model
    assert os.path.isfile(os.path.join(out, SERVING_DIR, "saved_model.pb"))
    assert not os.path.exists(os.path.join(out, ".download"))


def test_a_version_logged_before_the_pyfunc_flavour_is_still_the_baseline(mlflow_server, tmp_path):
    """Versions registered by older code hold the SavedModel's files as plain artifacts."""
    import mlflow
    from helpers import fake_saved_model
    from mlflow.tracking import MlflowClient

    from components.baseline import resolve_baseline
    from components.contract import SERVING_DIR, write_contract

    model = fake_saved_model(tmp_path / "old", payload=b"old" * 10)
    write_contract(model)
    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_experiment("older")
    with mlflow.start_run() as run:
        mlflow.log_artifacts(model, artifact_path="model")
    version = mlflow.register_model(f"runs:/{run.info.run_id}/model", "older")
    MlflowClient().set_registered_model_alias("older", "champion", version.version)
    out = str(tmp_path / "baseline")
    assert resolve_baseline("", "older", mlflow_server, out)["found"] is True
    with open(os.path.join(out, SERVING_DIR, "saved_model.pb"), "rb") as f:
        assert f.read() == b"old" * 10


# -- the registered model served by `mlflow models serve` -------------------------------------------
SERVED_NAME = "movies_messy"


@pytest.fixture(scope="module")
def messy_model(tmp_path_factory):
    """A real SavedModel of the movies fixture as users' files name their columns (spaces,
    parentheses, dots, slashes, non-ASCII), typed as the pipeline types CSV columns (numbers
    float, everything else strings; a column always present in training is a FixedLen feature,
    one with empty cells a VarLen one): Transform on 200 rows, one epoch, trainer.export.
    Returns (spec, SavedModel directory, the examples folder with its Split-eval)."""
    import tensorflow as tf
    import yaml
    from conftest import prepare, read_csv_columns, tft_examples

    from pipeline.spec import Spec
    from trainer.export import export
    from trainer.train import train

    tmp = tmp_path_factory.mktemp("messy_model")
    with open(MOVIES_FIXTURE_SPEC) as f:
        raw = yaml.safe_load(f)
    raw["name"] = SERVED_NAME
    raw["data"]["path"] = MOVIES_FIXTURE_CSV
    raw["training"].update(epochs=1)
    for section in ("inputs", "outputs", "slices"):
        for item in raw[section]:
            column = item.get("column", item["name"])
            item["column"] = MESSY_COLUMNS.get(column, column)
    spec = Spec.from_dict(raw)
    rows, kinds = read_csv_columns(MOVIES_FIXTURE_CSV, 200)
    rows = [{MESSY_COLUMNS.get(k, k): v for k, v in r.items()} for r in rows]
    kinds = {MESSY_COLUMNS.get(k, k): v for k, v in kinds.items()}
    kinds.update({i.column: "float" for i in spec.inputs if i.modality == "numeric"})
    kinds.update({o.column: "float" for o in spec.outputs if o.type == "regression"})
    prepared = prepare(spec, *tft_examples(rows, kinds), tmp)
    result = train(spec, prepared.tft_output, prepared.train_files, prepared.eval_files)
    saved_model = str(tmp / "export")
    export(result.model, prepared.tft_output, spec, result.info, saved_model)
    # The Examples artifact's eval split, as ExampleGen writes it (a missing cell is absent).
    examples = tmp / "examples"
    os.makedirs(examples / "Split-eval")
    frame = movies_frame().iloc[300:310]
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    path = str(examples / "Split-eval" / "data_tfrecord-00000-of-00001.gz")
    with tf.io.TFRecordWriter(path, options) as writer:
        for _, row in frame.iterrows():
            feature = {}
            for column, value in row.items():
                if isinstance(value, str):
                    feature[column] = tf.train.Feature(
                        bytes_list=tf.train.BytesList(value=[value.encode()])
                    )
                elif not pd.isna(value):
                    feature[column] = tf.train.Feature(
                        float_list=tf.train.FloatList(value=[float(value)])
                    )
            writer.write(
                tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
            )
    return spec, saved_model, str(examples)


def movies_frame():
    """The fixture CSV as a user's pandas reads it, under the messy column names."""
    return pd.read_csv(MOVIES_FIXTURE_CSV).rename(columns=MESSY_COLUMNS)


@pytest.fixture(scope="module")
def pushed(mlflow_server, messy_model):
    """The model pushed to MLflow: version 1, alias champion. Returns (spec, SavedModel dir)."""
    spec, saved_model, examples = messy_model
    version = push_to_mlflow(
        mlflow_server, SERVED_NAME, saved_model, card(1, 20.0, spec.to_dict(), examples)
    )
    assert version == "1"
    return spec, saved_model


@pytest.fixture(scope="module")
def served(mlflow_server, pushed, tmp_path_factory):
    """A real `mlflow models serve` of models:/movies_messy@champion on localhost, in a folder
    outside the project (the model class is imported from the installed project). Yields (URL,
    spec, SavedModel directory)."""
    spec, saved_model = pushed
    root = tmp_path_factory.mktemp("serve")
    port = free_port()
    log = open(root / "serve.log", "w")  # noqa: SIM115 - open for the server's lifetime
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve"]
        + ["-m", f"models:/{SERVED_NAME}@champion", "--env-manager", "local"]
        + ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
        # `mlflow models serve` runs `uvicorn` from PATH: this environment's bin first.
        env=dict(
            os.environ,
            MLFLOW_TRACKING_URI=mlflow_server,
            TF_USE_LEGACY_KERAS="1",
            PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
        ),
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        started = time.time()
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() - started > 240:
                text = (root / "serve.log").read_text()
                if "object has no attribute 'route'" in text:  # say what to do about it
                    import starlette

                    raise RuntimeError(
                        "MLflow 2.22.1's scoring server registers /ping with Starlette's "
                        f"`route` decorator, which starlette 1.0 removed (installed: "
                        f"{starlette.__version__}): pin starlette<1 (0.46.2 works with "
                        "fastapi 0.141.1)\n" + text[-1500:]
                    )
                raise RuntimeError(text[-4000:])
            time.sleep(0.5)
        print(f"\n[served] mlflow models serve answered after {time.time() - started:.1f} s")
        yield url, spec, saved_model
    finally:  # the CLI and the uvicorn server it starts: one process group
        stop_group(proc)
        log.close()


def stop_group(proc):
    for signal, wait in ((15, 30), (9, 30)):
        try:
            os.killpg(proc.pid, signal)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def invoke(url, payload):
    """POSTs to /invocations: (HTTP status, the parsed answer)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = urllib.request.Request(
        f"{url}/invocations", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def dataframe_split(frame):
    return {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}


def serving_raw_directly(saved_model, spec, frame):
    """The SavedModel's serving_raw on the same rows: each input by its name, "" for a missing
    string, NaN for a missing number (trainer/export.py)."""
    import tensorflow as tf

    fn = tf.saved_model.load(saved_model).signatures["serving_raw"]
    kwargs = {}
    for item in spec.inputs:
        dtype = fn.structured_input_signature[1][item.name].dtype
        cells = frame[item.column]
        if dtype == tf.string:
            values = ["" if pd.isna(v) else str(v) for v in cells]
        else:
            values = [float("nan") if pd.isna(v) else float(v) for v in cells]
        kwargs[item.name] = tf.constant(values, dtype=dtype)
    return {k: v.numpy() for k, v in fn(**kwargs).items()}


def test_the_champion_serves_every_head_as_the_saved_model_does(served):
    """Raw CSV rows (messy column names, empty cells, an ID column the model does not read) in
    `dataframe_split`: every head answers what serving_raw answers on the same values."""
    url, spec, saved_model = served
    frame = movies_frame()
    runtime_missing = frame[frame["Runtime (min)"].isna()]
    rows = pd.concat([frame.iloc[200:224], runtime_missing.head(6)], ignore_index=True)
    assert rows["MPAA/rating"].isna().any() and rows["Runtime (min)"].isna().any()
    request = rows[["ID"] + [i.column for i in spec.inputs]]
    status, answer = invoke(url, dataframe_split(request))
    assert status == 200, answer
    predictions = answer["predictions"]
    assert len(predictions) == len(rows)
    assert list(predictions[0]) == ["meter", "oscar", "genre", "genre_labels"]
    expected = serving_raw_directly(saved_model, spec, rows)
    differences = {}
    for head in ("meter", "oscar", "genre"):
        got = np.array([p[head] for p in predictions], dtype=np.float64).reshape(len(rows), -1)
        want = expected[head].astype(np.float64).reshape(len(rows), -1)
        assert np.all(np.isfinite(got))
        differences[head] = float(np.abs(got - want).max())
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=head)
    assert all(isinstance(p["meter"], float) for p in predictions)  # a number per row
    assert all(0 <= p["oscar"] <= 1 and len(p["genre"]) == 21 for p in predictions)
    labels = [[b.decode() for b in row] for row in expected["genre_labels"]]
    assert [p["genre_labels"] for p in predictions] == labels
    classes = [str(c) for c in spec.outputs[2].options["classes"]]
    for p in predictions:  # the class name where its probability is over 0.5, else ""
        assert p["genre_labels"] == [
            c if q > 0.5 else "" for c, q in zip(classes, p["genre"], strict=True)
        ]
    print(f"\n[served] max abs difference per head, served vs serving_raw: {differences}")


def test_bad_requests_are_answered_400_naming_the_column(served):
    url, spec, _ = served
    columns = [i.column for i in spec.inputs]
    rows = movies_frame().iloc[200:203][columns]

    def refused(payload, *words):
        status, answer = invoke(url, payload)
        assert status == 400, (status, answer)
        for word in words:
            assert word in answer.get("message", ""), (word, answer)
        return answer

    answer = refused(dataframe_split(rows.drop(columns=["Runtime (min)"])), "'Runtime (min)'")
    assert answer["error_code"] == "INVALID_PARAMETER_VALUE"
    words = rows.astype({"Year (release)": object})
    words.iloc[1, columns.index("Year (release)")] = "nineteen ninety"
    refused(dataframe_split(words), "Year (release)", "nineteen ninety")
    # Always present in training (a FixedLen feature): the model has no missing value for it.
    gap = rows.copy()
    gap.iloc[2, columns.index("reviews.count")] = None
    refused(dataframe_split(gap), "'reviews.count'", "row 2")
    refused(dataframe_split(rows.iloc[:0]), "no rows", "Year (release)")
    status, answer = invoke(url, b"")
    assert 400 <= status < 500, (status, answer)
    status, answer = invoke(url, {})
    assert 400 <= status < 500, (status, answer)


def test_the_registered_model_describes_itself_and_stays_the_baseline(
    pushed, mlflow_server, tmp_path
):
    """The MLmodel's signature has the spec's columns and types and every head's outputs, its
    input example the eval split's first rows; the baseline step finds the SavedModel inside."""
    import mlflow
    from mlflow.models import Model

    from components.baseline import resolve_baseline
    from components.contract import MODEL_CONTRACT, SERVING_DIR, saved_model_contract

    spec, _ = pushed
    mlflow.set_tracking_uri(mlflow_server)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{SERVED_NAME}@champion", dst_path=str(tmp_path / "download")
    )
    model = Model.load(local)
    inputs = {c.name: c.type.name for c in model.signature.inputs.inputs}
    assert inputs == {
        i.column: "double" if i.modality == "numeric" else "string" for i in spec.inputs
    }
    outputs = [c.name for c in model.signature.outputs.inputs]
    assert outputs == ["meter", "oscar", "genre", "genre_labels"]
    example = model.load_input_example(local)
    assert list(example.columns) == [i.column for i in spec.inputs] and len(example) == 3
    assert example["Título"].tolist() == movies_frame()["Título"].iloc[300:303].tolist()
    out = str(tmp_path / "baseline")
    record = resolve_baseline("", SERVED_NAME, mlflow_server, out)
    assert record["found"] is True and record["mlflow_version"] == "1"
    assert saved_model_contract(os.path.join(out, SERVING_DIR)) == MODEL_CONTRACT

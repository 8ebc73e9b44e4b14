"""MLflow registry push against a real MLflow tracking server (SQLite backend) on localhost."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from helpers import fake_saved_model

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


def card(version, mae):
    return {
        "version": version,
        "spec_fingerprint": "abc",
        "code_fingerprint": "def",
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

    model = fake_saved_model(tmp_path / "model")
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
        assert "model/saved_model.pb" in files


def test_the_champion_is_the_baseline_after_the_alias_moves_back(mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    from components.baseline import resolve_baseline
    from components.contract import SERVING_DIR, write_contract

    assert resolve_baseline("", "films", mlflow_server, str(tmp_path / "none"))["found"] is False
    for number in (1, 2):
        model = fake_saved_model(tmp_path / f"v{number}", payload=str(number).encode() * 10)
        write_contract(model)
        push_to_mlflow(mlflow_server, "films", model, card(number, 19.0))
    MlflowClient(tracking_uri=mlflow_server).set_registered_model_alias("films", "champion", "1")
    out = str(tmp_path / "baseline")
    record = resolve_baseline("", "films", mlflow_server, out)
    assert record["found"] is True and record["mlflow_version"] == "1"
    with open(os.path.join(out, SERVING_DIR, "saved_model.pb"), "rb") as f:
        assert f.read() == b"1" * 10
    assert not os.path.exists(os.path.join(out, ".download"))

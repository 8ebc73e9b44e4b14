"""Shared fixtures. pipeline.env comes first: TF_USE_LEGACY_KERAS=1 before TensorFlow loads."""

# isort: skip_file
# ruff: noqa: E402
from pipeline import env as _env  # noqa: F401  (TF_USE_LEGACY_KERAS=1, before TensorFlow)

import csv
import dataclasses
import inspect
import os

import pytest
import tensorflow as tf

# Two logical CPU devices for the whole session, so tf.distribute.MirroredStrategy runs for real
# on a machine without GPUs. Must happen before TensorFlow initialises its devices.
_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)


@pytest.fixture(scope="session")
def two_cpus():
    """MirroredStrategy over the two logical CPUs: the process's one (see choose_strategy)."""
    from trainer.train import choose_strategy

    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    assert len(cpus) >= 2
    return choose_strategy(cpus[:2])


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOVIES_FIXTURE_SPEC = os.path.join(REPO, "data", "movies", "fixture", "movies.yaml")
MOVIES_FIXTURE_CSV = os.path.join(REPO, "data", "movies", "fixture", "movies.csv")
DIGITS_FIXTURE_SPEC = os.path.join(REPO, "data", "digits", "fixture", "digits.yaml")
DIGITS_FIXTURE_TFRECORD = os.path.join(REPO, "data", "digits", "fixture", "digits.tfrecord")


def read_csv_columns(path, limit=None):
    """Rows of a CSV as the examples CsvExampleGen would make: typed per column, '' = missing."""
    with open(path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:limit]

    def kind(values):
        present = [v for v in values if v != ""]
        for cast, name in ((int, "int"), (float, "float")):
            try:
                [cast(v) for v in present]
                return name
            except ValueError:
                pass
        return "bytes"

    kinds = {c: kind([r[c] for r in rows]) for c in rows[0]}
    return rows, kinds


def tft_examples(rows, kinds):
    """(instances, feature_spec) in TFX's representation: dense [1] when always present, else sparse."""
    dtype = {"int": tf.int64, "float": tf.float32, "bytes": tf.string}
    cast = {"int": int, "float": float, "bytes": lambda v: v.encode()}
    feature_spec, instances = {}, [dict() for _ in rows]
    for column, k in kinds.items():
        always = all(r[column] != "" for r in rows)
        feature_spec[column] = (
            tf.io.FixedLenFeature([1], dtype[k]) if always else tf.io.VarLenFeature(dtype[k])
        )
        for inst, r in zip(instances, rows, strict=False):
            inst[column] = [cast[k](r[column])] if r[column] != "" else []
    return instances, feature_spec


DIGITS_FEATURE_SPEC = {
    "image": tf.io.FixedLenFeature([1], tf.string),
    "ink": tf.io.FixedLenFeature([1], tf.float32),
    "digit": tf.io.FixedLenFeature([1], tf.int64),
    "odd": tf.io.FixedLenFeature([1], tf.int64),
}


def digits_examples(n):
    """The first n digits fixture examples as (instances, feature_spec, parsed tensors)."""
    records = list(tf.data.TFRecordDataset(DIGITS_FIXTURE_TFRECORD).take(n).as_numpy_iterator())
    parsed = tf.io.parse_example(records, DIGITS_FEATURE_SPEC)
    instances = [{k: list(parsed[k][i].numpy()) for k in DIGITS_FEATURE_SPEC} for i in range(n)]
    return instances, DIGITS_FEATURE_SPEC, parsed


# `make test` runs on every core (pytest -n auto --dist loadgroup): each xdist worker is a session
# of its own, so tests that share a session fixture must run on the same worker, or it is made
# twice. Each module is one group (its module fixtures are made once), and these share one.
# (test_bad_inputs.py starts Beam's job server on its own worker too: a few seconds.)
SHARED_SESSION_FIXTURES = {
    # the shared local pipeline run (movies_run, killed_run, portable_flags)
    "test_local.py": "movies-run",
    "test_launcher_contract.py": "movies-run",
    # tf.Transform of the fixtures (movies_prepared, digits_prepared): two groups, so that the
    # trainer tests (about 5 minutes in all) can run on two workers, each making the fixtures.
    "test_model.py": "prepared",
    "test_selection.py": "prepared",
    "test_gbdt.py": "prepared-trees",
    "test_calibration.py": "prepared-trees",
    "test_tuning.py": "prepared-trees",
}

# The groups that take longest (`make test PYTEST_ARGS=--durations=0`, summed per group; 2 cores),
# started first: a long group started last leaves the other worker idle at the end (the Airflow
# scheduler's run did, for 3 of 28 minutes). xdist keeps this order (--no-loadscope-reorder in
# the Makefile; its default orders groups by how many tests they hold). Everything else follows
# in collection order.
LONGEST_FIRST = (
    "movies-run",  # 980 s
    "prepared",  # 550 s
    "test_airflow_scheduler.py",  # 370 s
    "test_monitoring.py",  # 215 s
    "prepared-trees",  # 120 s, and the Tuner's test
    "test_notebook.py",  # 135 s
)


SHARED_FIXTURE_NAMES = {
    "movies_run",
    "killed_run",
    "portable_flags",
    "beam_job_server",
    "beam_worker_pool",
    "movies_prepared",
    "digits_prepared",
}


def pytest_itemcollected(item):
    """Each test's group, as it is collected (xdist reads the groups when collection ends). A
    test of those modules that uses none of the shared fixtures runs wherever a worker is free."""
    module = item.nodeid.split("::")[0]
    group = SHARED_SESSION_FIXTURES.get(item.path.name, module)
    closure = set(getattr(item, "fixturenames", ()))
    # A test asking for `request` itself may fetch a shared fixture by name: it stays in the
    # group. (Every tmp_path test has `request` in its closure: the test's own arguments count.)
    own = set(inspect.signature(item.function).parameters) if hasattr(item, "function") else set()
    if group != module and not (SHARED_FIXTURE_NAMES & closure or "request" in own):
        group = item.nodeid
    item.add_marker(pytest.mark.xdist_group(group))


def _group(item) -> str:
    mark = item.get_closest_marker("xdist_group")
    return mark.args[0] if mark else item.nodeid


def pytest_collection_modifyitems(items):
    """The LONGEST_FIRST groups first, in that order (a stable sort: the rest keeps its order)."""

    def rank(item):
        group = _group(item)
        for n, name in enumerate(LONGEST_FIRST):
            if group == name or group.endswith(f"/{name}"):
                return n
        return len(LONGEST_FIRST)

    items.sort(key=rank)


@pytest.fixture(scope="session")
def movies_fixture_spec():
    from pipeline.spec import load_spec

    return load_spec(MOVIES_FIXTURE_SPEC)


def _beam_service(module: str, port_flag: str, log_path, env=None):
    """Starts `python -m module port_flag PORT` and waits until it listens; (process, port,
    the open log file)."""
    import socket
    import subprocess
    import sys
    import time

    import portpicker

    port = portpicker.pick_unused_port()
    log = open(log_path, "w")  # noqa: SIM115 - open for the server's lifetime
    server = subprocess.Popen(
        [sys.executable, "-m", module, port_flag, str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
        env=env,
        start_new_session=True,  # its workers too are stopped with it (_stop_beam_service)
    )
    deadline = time.time() + 120
    while True:
        try:
            socket.create_connection(("localhost", port), timeout=1).close()
            break
        except OSError:
            if server.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"{module} did not start: {log_path.read_text()}") from None
            time.sleep(0.5)
    return server, port, log


def _stop_beam_service(server, log, sig) -> None:
    """`sig` (the service's own way to stop), then after 5 s its whole process group is killed:
    a worker pool whose SDK harnesses are still up waited out a 30 s timeout before."""
    import signal
    import subprocess

    server.send_signal(sig)
    try:
        server.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    server.wait(timeout=30)
    log.close()


@pytest.fixture(scope="session")
def beam_job_server(tmp_path_factory):
    """Beam's own Job API server on localhost (the API Flink and Spark job servers speak).

    Yields (endpoint, log path); the log records every job it ran."""
    import signal

    log_path = tmp_path_factory.mktemp("job_server") / "job_server.log"
    server, port, log = _beam_service(
        "apache_beam.runners.portability.local_job_service_main", "--port", log_path
    )
    yield f"localhost:{port}", log_path
    _stop_beam_service(server, log, signal.SIGTERM)


@pytest.fixture(scope="session")
def beam_worker_pool(tmp_path_factory):
    """Beam's external SDK worker pool: each job's Python SDK harness in processes of its own,
    as a Flink or Spark cluster runs them beside its task managers. The pool starts workers
    with the `python` on PATH, so PATH starts with this .venv's bin (workers import the project).

    Yields (the pool's host:port, log path)."""
    import signal
    import sys

    log_path = tmp_path_factory.mktemp("worker_pool") / "worker_pool.log"
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    server, port, log = _beam_service(
        "apache_beam.runners.worker.worker_pool_main",
        "--service_port",
        log_path,
        env=dict(os.environ, PATH=path, TF_USE_LEGACY_KERAS="1"),
    )
    yield f"localhost:{port}", log_path
    _stop_beam_service(server, log, signal.SIGINT)  # the pool's own way: KeyboardInterrupt


# -- one whole pipeline run shared by the tests that read its outputs -------------------------
@pytest.fixture(scope="session")
def killed_run(tmp_path_factory, beam_job_server):
    """A `mimo run` of the messy movies data (below) killed with kill -9 inside Transform, its
    Beam steps on the job server with the SDK harness in its own process (LOOPBACK: it dies with
    the run). Returns (output folder, spec, the Transform folders it left)."""
    import glob
    import signal
    import subprocess
    import sys
    import time

    import yaml
    from helpers import write_messy_movies

    from pipeline.runners.local import run_paths
    from pipeline.spec import load_spec

    endpoint, _ = beam_job_server
    out = tmp_path_factory.mktemp("movies_run")
    raw = write_messy_movies(out / "messy.csv", MOVIES_FIXTURE_CSV, MOVIES_FIXTURE_SPEC)
    # With the boosted rival (the product's default), and a gate the candidate must pass
    # against it (loose: 400 rows decide little).
    raw["evaluation"] = {"baselines": ["gbdt"]}
    oscar = next(o for o in raw["outputs"] if o["name"] == "oscar")
    oscar["gates"].append({"metric": "auc", "beats": "gbdt", "max_regression": 0.5})
    (out / "movies.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True))
    spec = load_spec(str(out / "movies.yaml"))
    flags = ["--beam-runner", "portable", "--job-endpoint", endpoint]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "run", "--spec", str(out / "movies.yaml")]
        + ["--output", str(out), *flags, "--environment-type", "LOOPBACK"],
        cwd=REPO,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        for line in proc.stderr:
            if "Component Transform is running." in line:
                break
        time.sleep(4)  # inside Transform's Beam pipeline
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    transform = os.path.join(run_paths(spec, str(out)).pipeline_root, "Transform")
    return out, spec, glob.glob(os.path.join(transform, "*", "*"))


@pytest.fixture(scope="session")
def portable_flags(beam_job_server, beam_worker_pool):
    """`mimo run` flags for the Job API server with its external worker pool."""
    return [
        "--beam-runner",
        "portable",
        "--job-endpoint",
        beam_job_server[0],
        "--environment-type",
        "EXTERNAL",
        "--environment-config",
        beam_worker_pool[0],
    ]


@pytest.fixture(scope="session")
def movies_run(killed_run, portable_flags):
    """The fixture pipeline with every Beam step on the PortableRunner the way a Flink or Spark
    cluster runs it: submitted to a Job API server, artifacts staged, and each job's Python SDK
    harness started by an external worker pool (EXTERNAL environment) in processes of its own.
    The digits and CLI runs below use the DirectRunner. It runs on the output folder of a run
    killed inside Transform (killed_run), as a user re-runs the command.

    It trains the boosted rival beside the network (evaluation.baselines: gbdt) and gates the
    oscar head against it. Shared by every test that only reads its outputs
    (tests/pipeline/runners/test_local.py)
    and by the Kubeflow launcher-contract test (into a copy of its registry). Its data is
    the movies fixture as users' files come (tests/helpers.py): awkward column names,
    missing values written as NA, N/A, null, ... and each head's label missing on a different
    third of the rows. No hand cleaning."""
    import argparse

    from helpers import fake_saved_model

    from pipeline.runners.beam import add_beam_flags, beam_args, options_from_flags
    from pipeline.runners.local import latest_run_outputs, run_local

    out, spec, _ = killed_run
    # The Beam arguments `mimo run` makes of the same flags (the CLI runs below reuse its cache).
    parser = argparse.ArgumentParser()
    add_beam_flags(parser)
    portable = beam_args(options_from_flags(parser.parse_args(portable_flags)))
    # The registry it publishes to holds what a crash or a hand edit leaves: a numbered folder
    # with a SavedModel but no model card, and a killed publish's staging folder.
    fake_saved_model(out / "registry" / spec.name / "1")
    fake_saved_model(out / "registry" / spec.name / ".staging-killed")
    paths = run_local(spec, str(out), beam_args=portable)
    return spec, paths, latest_run_outputs(paths.metadata_path, paths.run_id)


# -- the fixtures' real transformed examples (trainer tests), made once per session ------------
@dataclasses.dataclass
class Prepared:
    spec: object  # pipeline.spec.Spec
    tft_output: object
    info: object  # trainer.model.FeatureInfo
    train_files: str
    eval_files: str


def prepare(spec, instances, feature_spec, tmp):
    from tft_harness import run_transform, write_transformed

    from trainer.data import collect_labels
    from trainer.model import FeatureInfo

    transformed, tft_output = run_transform(spec, instances, feature_spec, str(tmp))
    n = len(instances)
    cut = int(n * 0.75)
    train_files = write_transformed(transformed, tft_output, str(tmp / "train.gz"), range(cut))
    eval_files = write_transformed(transformed, tft_output, str(tmp / "eval.gz"), range(cut, n))
    labels = collect_labels(train_files, spec, tft_output.transformed_feature_spec())
    info = FeatureInfo.from_transform_output(tft_output, labels, spec)
    return Prepared(spec, tft_output, info, train_files, eval_files)


@pytest.fixture(scope="session")
def movies_prepared(tmp_path_factory):
    from pipeline.spec import load_spec

    spec = load_spec(MOVIES_FIXTURE_SPEC)
    rows, kinds = read_csv_columns(MOVIES_FIXTURE_CSV, 200)
    instances, feature_spec = tft_examples(rows, kinds)
    return prepare(spec, instances, feature_spec, tmp_path_factory.mktemp("movies"))


@pytest.fixture(scope="session")
def digits_prepared(tmp_path_factory):
    from pipeline.spec import load_spec

    spec = load_spec(DIGITS_FIXTURE_SPEC)
    instances, feature_spec, _ = digits_examples(120)
    return prepare(spec, instances, feature_spec, tmp_path_factory.mktemp("digits"))

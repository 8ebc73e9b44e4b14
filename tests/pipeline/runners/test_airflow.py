"""Airflow: the DAG file loaded by real Apache Airflow's DagBag (in `make test`), and a full
`dag.test()` run on the fixture data producing a pushed model, with no database server
(`make test-airflow`). The real scheduler's run is test_airflow_scheduler.py.

Airflow runs in a subprocess with its own AIRFLOW_HOME and SQLite metadata, so its settings and
logging never touch the test session.
"""

import json
import os
import subprocess
import sys

import pytest
from conftest import MOVIES_FIXTURE_SPEC, REPO

from pipeline.pipeline import create_pipeline
from pipeline.spec import load_spec

DAGS = os.path.join(REPO, "airflow", "dags")

LOAD = """
import json, resource, sys, time
from airflow.models import DagBag
before = set(sys.modules)
start = time.time()
bag = DagBag(dag_folder={dags!r}, include_examples=False)
seconds = time.time() - start
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
heavy = {{m.split(".")[0] for m in set(sys.modules) - before}}
from airflow.serialization.serialized_objects import SerializedDAG
dag = bag.dags.get({name!r})
print("RESULT " + json.dumps({{
    "import_errors": {{k: str(v) for k, v in bag.import_errors.items()}},
    "dag_ids": sorted(bag.dag_ids),
    "schedule": str(dag.schedule_interval) if dag else None,
    "start_date": dag.start_date.isoformat() if dag else None,
    "catchup": dag.catchup if dag else None,
    "retries": dag.default_args.get("retries") if dag else None,
    "tasks": {{t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks}} if dag else {{}},
    "heavy": sorted(heavy & {{"tensorflow", "tfx", "apache_beam", "tensorflow_transform"}}),
    "serialized": json.dumps(SerializedDAG.to_dict(dag), sort_keys=True) if dag else None,
    "parse_seconds": seconds,
    "max_rss_mb": rss,
}}))
"""

RUN = """
import json
from airflow.models import DagBag
from airflow.utils.state import DagRunState
bag = DagBag(dag_folder={dags!r}, include_examples=False)
assert not bag.import_errors, bag.import_errors
dag = bag.dags.get({name!r})
run = dag.test()
print("RESULT " + json.dumps({{
    "state": str(run.state),
    "tasks": {{ti.task_id: str(ti.state) for ti in run.get_task_instances()}},
}}))
"""


def airflow_env(tmp_path, output, extra=None):
    home = tmp_path / "airflow-home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": DAGS,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "MIMO_SPEC": MOVIES_FIXTURE_SPEC,
            "MIMO_OUTPUT": str(output),
            "MIMO_SCHEDULE": "30 4 * * 1-5",
            "MIMO_START_DATE": "2026-11-01",
            "TF_USE_LEGACY_KERAS": "1",
        }
    )
    env.update(extra or {})
    return env


def fixture_spec_with_schedule(tmp_path, schedule: str):
    """The fixture spec, its data path made absolute, with `schedule: <schedule>` added."""
    with open(MOVIES_FIXTURE_SPEC, encoding="utf-8") as f:
        text = f.read()
    data = os.path.join(os.path.dirname(MOVIES_FIXTURE_SPEC), "movies.csv")
    text = text.replace("path: movies.csv", f"path: {data}")
    spec_file = tmp_path / "scheduled.yaml"
    spec_file.write_text(f"{text}\nschedule: {schedule}\n")
    return spec_file


def migrate_airflow_db(env):
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )


def run_airflow(script, env, timeout):
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads(lines[-1][len("RESULT ") :])


@pytest.fixture(scope="module")
def fixture_spec():
    return load_spec(MOVIES_FIXTURE_SPEC)


def test_dagbag_loads_one_task_per_component_with_the_local_dependencies(tmp_path, fixture_spec):
    env = airflow_env(tmp_path, tmp_path / "out")
    result = run_airflow(LOAD.format(dags=DAGS, name=fixture_spec.name), env, timeout=600)
    assert result["import_errors"] == {}
    assert result["dag_ids"] == [fixture_spec.name]
    assert result["schedule"] == "30 4 * * 1-5"  # from the environment
    assert result["start_date"].startswith("2026-11-01")
    assert result["catchup"] is False
    local = create_pipeline(fixture_spec, str(tmp_path / "local"), registry=str(tmp_path / "r"))
    expected = {node.id: sorted(u.id for u in node.upstream_nodes) for node in local.components}
    assert result["tasks"] == expected
    assert result["retries"] == fixture_spec.schedule["retries"] == 2
    # The first parse made the plan (in a subprocess); parsing again reads it: neither parse
    # imported TensorFlow or TFX, and both serialize the DAG identically.
    again = run_airflow(LOAD.format(dags=DAGS, name=fixture_spec.name), env, timeout=600)
    assert result["heavy"] == again["heavy"] == []
    assert again["serialized"] == result["serialized"]
    print(
        f"DAG file parse: first {result['parse_seconds']:.1f} s (makes the plan), then "
        f"{again['parse_seconds']:.2f} s, {again['max_rss_mb']:.0f} MB max RSS"
    )


def test_schedule_comes_from_the_spec_when_the_environment_is_silent(tmp_path, fixture_spec):
    spec_file = fixture_spec_with_schedule(tmp_path, "{cron: '@weekly', start_date: 2026-06-01}")
    env = airflow_env(tmp_path, tmp_path / "out", {"MIMO_SPEC": str(spec_file)})
    del env["MIMO_SCHEDULE"], env["MIMO_START_DATE"]
    result = run_airflow(LOAD.format(dags=DAGS, name=fixture_spec.name), env, timeout=600)
    assert result["import_errors"] == {}
    assert result["schedule"] == "@weekly"
    assert result["start_date"].startswith("2026-06-01")


NEXT_RUNS = """
import datetime, json
from unittest import mock
from airflow.models import DagBag
from airflow.utils import timezone
bag = DagBag(dag_folder={dags!r}, include_examples=False)
assert not bag.import_errors, bag.import_errors
dag = bag.dags[{name!r}]
runs = {{}}
for day in ("2026-11-24", "2026-11-25", "2026-11-26"):
    now = timezone.parse(day + "T10:00:00+00:00")
    with mock.patch("airflow.timetables.interval.utcnow", return_value=now):
        info = dag.next_dagrun_info(None)
    runs[day] = [info.data_interval.start.isoformat(), info.run_after.isoformat()]
print("RESULT " + json.dumps({{"start_date": dag.start_date.isoformat(), "runs": runs}}))
"""


def test_the_daily_run_is_due_whatever_day_the_file_is_parsed(tmp_path, fixture_spec):
    """No start date anywhere: the DAG starts on a fixed past date (not the parse day, which
    moved the first 03:00 run a day later at every parse), and Airflow's own next-run computation
    with the clock at 10:00 on three consecutive days schedules that day's 03:00 run at once."""
    env = airflow_env(tmp_path, tmp_path / "out")
    del env["MIMO_START_DATE"], env["MIMO_SCHEDULE"]
    result = run_airflow(NEXT_RUNS.format(dags=DAGS, name=fixture_spec.name), env, timeout=600)
    assert result["start_date"].startswith("2025-01-01")
    assert result["runs"] == {
        day: [f"{before}T03:00:00+00:00", f"{day}T03:00:00+00:00"]
        for before, day in (
            ("2026-11-23", "2026-11-24"),
            ("2026-11-24", "2026-11-25"),
            ("2026-11-25", "2026-11-26"),
        )
    }


def test_compile_airflow_refuses_a_start_date_in_the_future(tmp_path, capsys):
    from pipeline.cli import main

    dag_file = tmp_path / "dags" / "fixture_dag.py"
    args = ["compile", "airflow", "--spec", MOVIES_FIXTURE_SPEC, "--output", str(dag_file)]
    assert main([*args, "--start-date", "2999-01-01"]) == 2
    assert "2999-01-01 is in the future" in capsys.readouterr().err
    assert not dag_file.exists()


def test_a_dag_file_written_by_mimo_compile_airflow_loads(tmp_path, fixture_spec):
    from pipeline.cli import main

    dags = tmp_path / "dags"
    dag_file = dags / "fixture_dag.py"
    args = ["compile", "airflow", "--spec", MOVIES_FIXTURE_SPEC, "--output", str(dag_file)]
    args += ["--runs", str(tmp_path / "runs"), "--schedule", "15 2 * * *"]
    args += ["--start-date", "2026-10-01"]
    assert main(args) == 0
    env = airflow_env(tmp_path, tmp_path / "out", {"AIRFLOW__CORE__DAGS_FOLDER": str(dags)})
    for key in ("MIMO_SPEC", "MIMO_OUTPUT", "MIMO_SCHEDULE", "MIMO_START_DATE"):
        del env[key]  # the file alone says what to run
    result = run_airflow(LOAD.format(dags=str(dags), name=fixture_spec.name), env, timeout=600)
    assert result["import_errors"] == {}
    assert result["dag_ids"] == [fixture_spec.name]
    assert result["schedule"] == "15 2 * * *"
    assert result["start_date"].startswith("2026-10-01")
    local = create_pipeline(fixture_spec, str(tmp_path / "local"), registry=str(tmp_path / "r"))
    assert set(result["tasks"]) == {node.id for node in local.components}


@pytest.mark.airflow_run
@pytest.mark.e2e
def test_dag_test_runs_the_pipeline_end_to_end_and_pushes(tmp_path, fixture_spec):
    from components.registry import Registry

    output = tmp_path / "out"
    env = airflow_env(tmp_path, output)
    migrate_airflow_db(env)
    result = run_airflow(RUN.format(dags=DAGS, name=fixture_spec.name), env, timeout=1800)
    assert result["state"] == "success", result
    assert all(state == "success" for state in result["tasks"].values()), result["tasks"]
    registry = Registry(str(output / "registry"))
    assert registry.versions(fixture_spec.name) == [1]

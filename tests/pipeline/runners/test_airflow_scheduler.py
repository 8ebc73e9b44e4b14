"""Airflow's real scheduler, as a team runs it in production: `airflow scheduler` with the
LocalExecutor and its metadata in PostgreSQL (a server started for the test on loopback), the
fixture DAG unpaused and left to its schedule.

The scheduled run fires on its own; while the Trainer trains, its task process is killed with
SIGKILL (what the kernel's OOM killer does); Airflow retries the task in the same DAG run, the
retry trains again and its model is the one pushed. The scheduler's stored DAG is never rewritten
during the run (the DAG file serializes identically at every parse).
"""

from __future__ import annotations

import datetime
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO
from postgres import postgres_server, server_bin
from test_airflow import airflow_env, fixture_spec_with_schedule, migrate_airflow_db

from pipeline.spec import load_spec

pytestmark = pytest.mark.e2e

STEP_LINE = re.compile(r"\[mimo\] (\w+) of \S+, run \S+, try (\d+), process (\d+)")


def _query(url: str, sql: str, *args):
    import psycopg2

    dsn = url.replace("postgresql+psycopg2://", "postgresql://")
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def _task_log(home, step: str, attempt: int) -> str:
    found = glob.glob(
        str(home / "logs" / "dag_id=*" / "run_id=*" / f"task_id={step}" / f"attempt={attempt}.log")
    )
    if not found:
        return ""
    with open(found[0], errors="replace") as f:
        return f.read()


def _stop(proc, home) -> None:
    """Stops the scheduler, then any step still running: Airflow starts each task in a process
    group of its own, which the scheduler's does not reach."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    for path in glob.glob(str(home / "logs" / "dag_id=*" / "run_id=*" / "task_id=*" / "*.log")):
        with open(path, errors="replace") as f:
            for step in STEP_LINE.finditer(f.read()):
                pid = int(step.group(3))
                try:  # only if the number still names an Airflow task (numbers are reused)
                    with open(f"/proc/{pid}/cmdline", "rb") as c:
                        if b"airflow task" in c.read().replace(b"\0", b" "):
                            os.kill(pid, signal.SIGKILL)
                except (FileNotFoundError, ProcessLookupError):
                    pass


def _executions(output, dag_id: str):
    """(ML Metadata's store, {step: its executions in the order they were made})."""
    from ml_metadata.metadata_store import metadata_store
    from tfx.orchestration.metadata import sqlite_metadata_connection_config

    store = metadata_store.MetadataStore(
        sqlite_metadata_connection_config(str(output / "metadata" / dag_id / "metadata.db"))
    )
    steps: dict = {}
    for e in sorted(store.get_executions(), key=lambda e: e.id):
        steps.setdefault(e.properties["component_id"].string_value, []).append(e)
    return store, steps


def _seconds(execution) -> float:
    """Time an execution spent in TFX (ML Metadata's create and last update)."""
    return (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000


def test_the_scheduler_fires_the_run_and_retries_a_killed_trainer_which_is_pushed(tmp_path):
    if server_bin() is None:
        pytest.skip(
            "LOUD SKIP: PostgreSQL's server is not installed (`make postgres` installs Debian's "
            "postgresql): Airflow's scheduler test did not run"
        )
    from components.registry import Registry

    spec_file = fixture_spec_with_schedule(tmp_path, "{retries: 1, retry_delay_minutes: 0}")
    # A daily run at an hour 12 hours away: the latest interval's run fires at once, and the
    # next cannot start during the test.
    hour = (datetime.datetime.now(datetime.timezone.utc).hour + 12) % 24
    spec = load_spec(str(spec_file))
    output = tmp_path / "out"
    home = tmp_path / "airflow-home"
    with postgres_server() as url:
        env = airflow_env(
            tmp_path,
            output,
            {
                "MIMO_SPEC": str(spec_file),
                "MIMO_SCHEDULE": f"0 {hour} * * *",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url,
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "10",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            },
        )
        started = time.time()
        migrate_airflow_db(env)
        migrated = time.time() - started
        log = open(tmp_path / "scheduler.log", "w")
        scheduler = subprocess.Popen(
            [sys.executable, "-m", "airflow", "scheduler", "--skip-serve-logs"],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        killed = None
        stored_dag = None
        dag_id = spec.name

        def stored_dag_row():
            return _query(
                url, "SELECT dag_hash, last_updated FROM serialized_dag WHERE dag_id = %s", dag_id
            )

        def run_state():
            runs = _query(url, "SELECT state FROM dag_run WHERE dag_id = %s", dag_id)
            return runs[0][0] if runs else None

        def wait_for_the_run(deadline, while_waiting=lambda: None):
            while time.time() < deadline and scheduler.poll() is None:
                time.sleep(2)
                while_waiting()
                if run_state() in ("success", "failed"):
                    return

        def kill_the_first_trainer_mid_training():
            nonlocal killed, stored_dag
            if stored_dag is None:
                rows = stored_dag_row()
                stored_dag = rows[0] if rows else None
            if killed is None:
                trainer = _task_log(home, "Trainer", 1)
                step = STEP_LINE.search(trainer)
                if step and "[Trainer] epoch 1/" in trainer:
                    try:
                        os.kill(int(step.group(3)), signal.SIGKILL)  # no cleanup of any kind
                        killed = time.time()
                    except ProcessLookupError:
                        killed = False  # it finished between two polls

        try:
            wait_for_the_run(time.time() + 1500, kill_the_first_trainer_mid_training)
            first = {
                "runs": _query(
                    url,
                    "SELECT run_id, run_type, state, start_date, end_date FROM dag_run "
                    "WHERE dag_id = %s",
                    dag_id,
                ),
                "tasks": _query(
                    url,
                    "SELECT task_id, try_number, state, start_date, end_date FROM task_instance "
                    "WHERE dag_id = %s ORDER BY start_date",
                    dag_id,
                ),
                "earlier_tries": _query(
                    url,
                    "SELECT task_id, try_number, state FROM task_instance_history "
                    "WHERE dag_id = %s",
                    dag_id,
                ),
            }
            # What an operator does after a failure: run the Trainer and what follows it
            # again in the same DAG run.
            cleared = None
            if first["runs"] and first["runs"][0][2] == "success":
                clear = [sys.executable, "-m", "airflow", "tasks", "clear", "-y", "-d"]
                proc = subprocess.run(
                    [*clear, "-t", "^Trainer$", dag_id],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                assert proc.returncode == 0, proc.stderr[-3000:]
                cleared = time.time()
                wait_for_the_run(time.time() + 900)
                cleared = time.time() - cleared
            after_clear = _query(
                url,
                "SELECT task_id, try_number, state FROM task_instance WHERE dag_id = %s",
                dag_id,
            )
            state_after_clear = run_state()
            stored_at_end = stored_dag_row()
            scheduler_alive = scheduler.poll() is None
        finally:
            _stop(scheduler, home)
            log.close()
    scheduler_log = (tmp_path / "scheduler.log").read_text(errors="replace")
    context = f"{first}\n{after_clear}\nscheduler log:\n{scheduler_log[-4000:]}"
    assert scheduler_alive, context
    assert killed, f"the Trainer's first try was not killed mid-training ({killed})\n{context}"

    # The run fired on its own: a scheduled run of the latest interval (catchup: false).
    [(run_id, run_type, state, run_start, run_end)] = first["runs"]
    assert run_type == "scheduled" and state == "success", context
    assert run_id.startswith("scheduled__") and f"T{hour:02d}:00:00" in run_id

    # Every step succeeded; the Trainer at its second try, its first recorded as failed.
    tasks = first["tasks"]
    by_task = {t[0]: t for t in tasks}
    assert all(t[2] == "success" for t in tasks), context
    assert by_task["Trainer"][1] == 2, context
    assert first["earlier_tries"] == [("Trainer", 1, "failed")], context
    first_try = _task_log(home, "Trainer", 1)
    assert "Task exited with return code -9" in first_try, first_try[-3000:]
    assert STEP_LINE.search(_task_log(home, "Trainer", 2)).group(2) == "2"

    # Cleared, the Trainer and the steps after it ran again in the same run, which succeeded.
    assert cleared is not None and state_after_clear == "success", context
    tries = {task: n for task, n, _state in after_clear}
    assert {t for t, n in tries.items() if n > by_task[t][1]} == {
        "Trainer", "Evaluator", "RunReport", "RegistryPusher"
    }, after_clear  # fmt: skip
    assert all(state == "success" for _t, _n, state in after_clear), after_clear

    # TFX: the killed try's execution marked failed; the retry's model pushed as version 1,
    # the cleared run's as version 2.
    store, steps = _executions(output, dag_id)
    trainer = steps["Trainer"]
    assert [e.properties["state"].string_value for e in trainer] == [
        "failed", "complete", "complete"
    ]  # fmt: skip

    def model_of(execution):
        events = store.get_events_by_execution_ids([execution.id])
        outputs = [ev.artifact_id for ev in events if ev.type == ev.OUTPUT]
        [uri] = [a.uri for a in store.get_artifacts_by_id(outputs) if "/Trainer/model/" in a.uri]
        assert uri.endswith(f"/{execution.id}")
        return uri

    registry = Registry(str(output / "registry"))
    assert registry.versions(dag_id) == [1, 2]
    assert registry.card(dag_id, 1)["model_uri"] == model_of(trainer[1])
    assert registry.card(dag_id, 2)["model_uri"] == model_of(trainer[2])

    # The scheduler re-parsed the DAG file all run long and never rewrote the stored DAG.
    processor_logs = {
        os.path.realpath(f) for f in glob.glob(str(home / "logs" / "scheduler" / "*" / "*.py.log"))
    }  # one per day, and `latest` links to one of them
    parses = sum(open(f, errors="replace").read().count("Processing file") for f in processor_logs)
    assert stored_dag is not None and stored_at_end == [stored_dag], (stored_dag, stored_at_end)

    # What the run cost: each task's time in Airflow against its step's time in TFX.
    table = []
    for task_id, try_number, _state, start, end in tasks:
        airflow_seconds = (end - start).total_seconds()
        table.append(
            (task_id, try_number, airflow_seconds, _seconds(steps[task_id][try_number - 1]))
        )
    restarts = scheduler_log.count("last sent a heartbeat")
    with open(home / "logs" / "dag_processor_manager" / "dag_processor_manager.log") as f:
        # The processor's stats table: the DAG file's "Last Runtime", then its "Last Run".
        parse_seconds = [
            float(s) for s in re.findall(r"mimo_dag\.py .*?(\d+\.\d+)s\s+\d{4}-", f.read())
        ]
    report = {
        "db_migrate_seconds": round(migrated, 1),
        "clear_to_success_seconds": round(cleared, 1),
        "run_seconds": round((run_end - run_start).total_seconds(), 1),
        "retry_started_after_kill_seconds": round(by_task["Trainer"][3].timestamp() - killed, 1),
        "tasks": [
            {
                "task": t,
                "try": n,
                "airflow_s": round(a, 1),
                "tfx_s": round(x, 1),
                "outside_tfx_s": round(a - x, 1),
            }
            for t, n, a, x in table
        ],
        "dag_file_parses_logged": parses,
        "dag_file_parse_seconds": sorted(set(parse_seconds)),
        "dag_processor_restarts": restarts,
    }
    print("AIRFLOW SCHEDULER RUN " + json.dumps(report))

"""The Airflow DAG of a mimo pipeline, as the scheduler parses it: Airflow and the standard
library only, no TensorFlow, TFX or Beam.

The scheduler parses a DAG file every 30 s or so, and every task process parses it again before
its task runs. Built with TFX's AirflowDagRunner, each parse imported TensorFlow and TFX and built
the pipeline (9-20 s, ~1 GB; Airflow's default `dagbag_import_timeout` is 30 s), and a random
id in the Trainer's settings changed the serialized DAG at every parse. Here a parse reads a
*plan*: the DAG's id, schedule, retries and steps with their upstream steps, all computed once
from the spec by `create_pipeline` (pipeline/runners/airflow.py, `make_plan`). `mimo compile
airflow` writes the plan into the DAG file it writes; the bundled airflow/dags/mimo_dag.py, set
by environment variables, keeps it in `<output>/airflow/plans/<key>.json`, made by a subprocess
the first time a spec, its options or the project's code is seen (`key` digests all three).

Each task runs one step in its own process: `run_step` imports TFX there, builds the pipeline
with the same `create_pipeline` and launches that step with TFX's component launcher
(`launch_step`), which checks that the pipeline still has the plan's steps.
"""

import datetime
import functools
import hashlib
import json
import os
import subprocess
import sys

PLAN_FORMAT = 1


def plan_key(spec_path: str, settings: dict) -> str:
    """Digest of what a plan depends on: the spec file, the settings and the project's code."""
    from pipeline.version import ALL_CODE, code_fingerprint  # reads files; imports nothing heavy

    digest = hashlib.sha256()
    with open(spec_path, "rb") as f:
        digest.update(f.read())
    digest.update(json.dumps(settings, sort_keys=True).encode())
    digest.update(code_fingerprint(ALL_CODE).encode())
    digest.update(str(PLAN_FORMAT).encode())
    return digest.hexdigest()[:16]


def plan_for(
    spec_path: str,
    output_dir: str,
    schedule: str | None = None,
    start_date: str | None = None,
    beam_args: list[str] | None = None,
) -> dict:
    """The plan for these settings: read from the cache, else made once by a subprocess (which
    imports TFX; this process does not)."""
    settings = {
        "spec_path": os.path.abspath(spec_path),
        "output_dir": os.path.abspath(output_dir),
        "schedule": schedule,
        "start_date": start_date,
        "beam_args": beam_args,
    }
    key = plan_key(spec_path, settings)
    path = os.path.join(settings["output_dir"], "airflow", "plans", f"{key}.json")
    if not os.path.isfile(path):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pipeline.runners.airflow",
                "--plan",
                json.dumps(settings),
                path,
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
            raise ValueError(lines[-1][len("error: ") :] if lines else proc.stderr[-2000:])
    with open(path) as f:
        return json.load(f)


def run_step(plan: dict, step: str, ti=None, **_context) -> None:
    """An Airflow task: one step of the pipeline, launched by TFX in this process."""
    from pipeline import env  # noqa: F401  (TF_USE_LEGACY_KERAS=1 before TensorFlow)
    from pipeline.runners.airflow import launch_step

    launch_step(plan, step, run_id=ti.get_dagrun().run_id, try_number=ti.try_number)


def dag_from_plan(plan: dict):
    from airflow.models.dag import DAG
    from airflow.operators.python import PythonOperator

    day = datetime.date.fromisoformat(plan["start_date"])
    dag = DAG(
        dag_id=plan["dag_id"],
        schedule=plan["schedule"],
        start_date=datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.timezone.utc),
        catchup=plan["catchup"],  # default false: a missed day is not worth N trainings
        max_active_runs=1,  # runs share ML Metadata and the registry
        tags=["mimo", "tfx"],
        doc_md=plan["doc_md"],
        default_args={
            "retries": plan["retries"],
            "retry_delay": datetime.timedelta(minutes=plan["retry_delay_minutes"]),
        },
    )
    run = {k: plan[k] for k in ("dag_id", "spec_path", "output_dir", "beam_args", "steps")}
    tasks = {}
    for step in plan["steps"]:
        tasks[step["id"]] = PythonOperator(
            task_id=step["id"],
            # Not op_kwargs: Airflow renders those as templates ('{{' in a path would be read).
            python_callable=functools.partial(run_step, run, step["id"]),
            dag=dag,
        )
        for upstream in step["upstream"]:
            tasks[step["id"]].set_upstream(tasks[upstream])
    return dag


def build_dag(
    spec_path: str,
    output_dir: str,
    schedule: str | None = None,
    start_date: str | None = None,
    beam_args: list[str] | None = None,
):
    """The DAG for a spec and these settings (the bundled, environment-driven DAG file)."""
    return dag_from_plan(plan_for(spec_path, output_dir, schedule, start_date, beam_args))

"""The Airflow runner: the same create_pipeline, turned into a DAG by TFX's AirflowDagRunner.

airflow/dags/mimo_dag.py calls build_dag() when Airflow parses it. Each component is one Airflow
task (run in-process by TFX's component launcher), with ML Metadata in SQLite under the output
directory as for the local runner, and the registry next to it.
"""

from __future__ import annotations

import datetime

from pipeline.local import DEFAULT_BEAM_ARGS, local_pipeline
from pipeline.spec import load_spec


def schedule_settings(spec, schedule: str | None, start_date: str | None, today: datetime.date):
    """(cron, start datetime): the environment's values, else the spec's, else today."""
    cron = schedule or spec.schedule["cron"]
    start = start_date or spec.schedule["start_date"]
    day = datetime.date.fromisoformat(start) if start else today
    return cron, datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.timezone.utc)


def build_dag(
    spec_path: str,
    output_dir: str,
    schedule: str | None = None,
    start_date: str | None = None,
    beam_args: list[str] | None = None,
    today: datetime.date | None = None,
):
    from tfx.orchestration.airflow.airflow_dag_runner import (
        AirflowDagRunner,
        AirflowPipelineConfig,
    )

    spec = load_spec(spec_path)
    cron, start = schedule_settings(spec, schedule, start_date, today or datetime.date.today())
    pipeline, _ = local_pipeline(
        spec, output_dir, beam_args=DEFAULT_BEAM_ARGS if beam_args is None else beam_args
    )
    config = AirflowPipelineConfig(
        airflow_dag_config={
            "schedule": cron,
            "start_date": start,
            "catchup": False,  # a missed day is not worth N back-to-back trainings
            "max_active_runs": 1,  # runs share ML Metadata and the registry
            "tags": ["mimo", "tfx"],
            "doc_md": f"TFX pipeline `{spec.name}` from `{spec_path}` (mimo).",
        }
    )
    return AirflowDagRunner(config).run(pipeline)

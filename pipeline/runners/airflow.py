"""The Airflow runner: the same create_pipeline, turned into a DAG by TFX's AirflowDagRunner.

A DAG file calls build_dag() when Airflow parses it: the bundled airflow/dags/mimo_dag.py (set
by environment variables), or one written for a spec by `mimo compile airflow`. Each component
is one Airflow task (run in-process by TFX's component launcher), with ML Metadata in SQLite
under the output directory as for the local runner, and the registry next to it.
"""

from __future__ import annotations

import datetime
import os
import shlex
import sys

from pipeline.runners import Command, Runner, register
from pipeline.runners.local import DEFAULT_BEAM_ARGS, local_pipeline
from pipeline.spec import future_start, load_spec


def schedule_settings(spec, schedule: str | None = None, start_date: str | None = None):
    """(cron, start datetime, catchup): the environment's values, else the spec's. The start is
    always a fixed date (the spec's default is one), never the day the file is parsed."""
    cron = schedule or spec.schedule["cron"]
    start = start_date or spec.schedule["start_date"]
    try:
        datetime.date.fromisoformat(start)
    except ValueError:
        raise ValueError(f"start date {start!r}: expected YYYY-MM-DD") from None
    problem = future_start(start)
    if problem:
        raise ValueError(f"start date {problem}")
    day = datetime.date.fromisoformat(start)
    start = datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.timezone.utc)
    return cron, start, spec.schedule["catchup"]


def build_dag(
    spec_path: str,
    output_dir: str,
    schedule: str | None = None,
    start_date: str | None = None,
    beam_args: list[str] | None = None,
):
    from tfx.orchestration.airflow.airflow_dag_runner import (
        AirflowDagRunner,
        AirflowPipelineConfig,
    )

    spec = load_spec(spec_path)
    cron, start, catchup = schedule_settings(spec, schedule, start_date)
    pipeline, _ = local_pipeline(
        spec, output_dir, beam_args=DEFAULT_BEAM_ARGS if beam_args is None else beam_args
    )
    config = AirflowPipelineConfig(
        airflow_dag_config={
            "schedule": cron,
            "start_date": start,
            "catchup": catchup,  # default false: a missed day is not worth N trainings
            "max_active_runs": 1,  # runs share ML Metadata and the registry
            "tags": ["mimo", "tfx"],
            "doc_md": f"TFX pipeline `{spec.name}` from `{spec_path}` (mimo).",
        }
    )
    return AirflowDagRunner(config).run(pipeline)


DAG_FILE = """\
\"\"\"Airflow DAG of the mimo pipeline '{name}', written by `mimo compile airflow`.

Put this file in Airflow's dags folder; Airflow must run from the project's environment.
\"\"\"

from pipeline import env as _env  # noqa: F401  (TF_USE_LEGACY_KERAS=1 before TensorFlow)
from pipeline.runners.airflow import build_dag

DAG = build_dag(
    spec_path={spec_path!r},
    output_dir={output_dir!r},
    schedule={schedule!r},
    start_date={start_date!r},
    beam_args={beam_args!r},
)
"""


class AirflowRunner(Runner):
    name = "airflow"
    doc = "a scheduled Airflow DAG (TFX's AirflowDagRunner), one task per component"

    def commands(self):
        return {"compile": Command("write an Airflow DAG file for the spec", self.add, self.write)}

    def add(self, parser) -> None:
        parser.add_argument(
            "--output", required=True, help="the DAG file to write (in Airflow's dags folder)"
        )
        parser.add_argument(
            "--runs",
            default=os.path.join("runs", "airflow"),
            help="artifacts, ML Metadata and the registry of the DAG's runs",
        )
        parser.add_argument("--schedule", help="cron or @preset (default: the spec's schedule)")
        parser.add_argument("--start-date", help="ISO date (default: the spec's start_date)")
        parser.add_argument(
            "--beam-args",
            help="Beam arguments, space separated (default: the DirectRunner in one process)",
        )

    def write(self, spec, args) -> int:
        try:
            cron, start, catchup = schedule_settings(spec, args.schedule, args.start_date)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        text = DAG_FILE.format(
            name=spec.name,
            spec_path=os.path.abspath(spec.source),
            output_dir=os.path.abspath(args.runs),
            schedule=args.schedule,
            start_date=args.start_date,
            beam_args=shlex.split(args.beam_args) if args.beam_args else None,
        )
        folder = os.path.dirname(os.path.abspath(args.output))
        os.makedirs(folder, exist_ok=True)
        with open(args.output, "w") as f:
            f.write(text)
        print(f"Wrote the Airflow DAG '{spec.name}' to {os.path.abspath(args.output)}")
        print(
            f"  schedule: {cron}, from {start.date().isoformat()}"
            f"{' (catching up every missed interval)' if catchup else ''}"
        )
        print(f"  runs, ML Metadata and the registry under {os.path.abspath(args.runs)}")
        return 0


register(AirflowRunner())

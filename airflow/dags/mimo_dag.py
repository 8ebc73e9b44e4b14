"""The pipeline as a scheduled Airflow DAG: one task per step, each run by TFX's launcher.

Point Airflow's dags folder here (or link this file into it); the project and Airflow share
.venv (`make setup`). Parsing it imports no TensorFlow or TFX: the steps come from a plan made
once per spec, settings and code version (under MIMO_OUTPUT/airflow/plans/, by a subprocess).
Configured by environment variables, read when Airflow parses the file:

  MIMO_SPEC        the dataset spec (default: the bundled movies spec)
  MIMO_OUTPUT      artifacts, ML Metadata and the registry (default: <repo>/runs/airflow)
  MIMO_SCHEDULE    cron expression or Airflow preset (default: the spec's `schedule:`, else
                   '0 3 * * *', 03:00 daily)
  MIMO_START_DATE  first data interval, a past ISO date (default: the spec's `start_date:`,
                   a fixed date; never the day the file is parsed)
  MIMO_BEAM_ARGS   Beam arguments, space separated (default: the DirectRunner in one process;
                   see `mimo run --help` for distributed runners)
"""

from __future__ import annotations

import os
import shlex

from pipeline.runners.airflow_dag import build_dag

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DAG = build_dag(
    spec_path=os.environ.get("MIMO_SPEC", os.path.join(REPO, "data", "movies", "movies.yaml")),
    output_dir=os.environ.get("MIMO_OUTPUT", os.path.join(REPO, "runs", "airflow")),
    schedule=os.environ.get("MIMO_SCHEDULE") or None,
    start_date=os.environ.get("MIMO_START_DATE") or None,
    beam_args=shlex.split(os.environ["MIMO_BEAM_ARGS"]) if "MIMO_BEAM_ARGS" in os.environ else None,
)

"""The Airflow runner: the same create_pipeline, one Airflow task per step.

A DAG file builds its DAG from a plan (pipeline/runners/airflow_dag.py, which imports nothing
heavy): the bundled airflow/dags/mimo_dag.py (set by environment variables; its plan is made by
`python -m pipeline.runners.airflow --plan`) or one written for a spec by `mimo compile airflow`
(the plan inside the file). Each task launches its step with TFX's component launcher made
retry-safe (`launch_step`), with ML Metadata in SQLite under the output directory as for the
local runner, and the registry next to it.
"""

from __future__ import annotations

import datetime
import json
import os
import pprint
import shlex
import sys
import tempfile

from pipeline.runners import Command, Runner, register
from pipeline.runners.airflow_dag import PLAN_FORMAT
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


def pipeline_steps(pipeline) -> list[dict]:
    """The pipeline's steps in order, each with its upstream steps: the Airflow tasks."""
    return [
        {"id": node.id, "upstream": sorted(u.id for u in node.upstream_nodes)}
        for node in pipeline.components
    ]


def make_plan(
    spec,
    output_dir: str,
    schedule: str | None = None,
    start_date: str | None = None,
    beam_args: list[str] | None = None,
) -> dict:
    """What the DAG file needs at parse time (pipeline/runners/airflow_dag.py), from the spec
    and the same create_pipeline every runner uses."""
    cron, start, catchup = schedule_settings(spec, schedule, start_date)
    beam = list(DEFAULT_BEAM_ARGS if beam_args is None else beam_args)
    pipeline, _ = local_pipeline(spec, output_dir, beam_args=beam)
    return {
        "format": PLAN_FORMAT,
        "dag_id": pipeline.pipeline_info.pipeline_name,
        "spec_path": os.path.abspath(spec.source),
        "output_dir": os.path.abspath(output_dir),
        "beam_args": beam,
        "schedule": cron,
        "start_date": start.date().isoformat(),
        "catchup": catchup,
        "retries": spec.schedule["retries"],
        "retry_delay_minutes": spec.schedule["retry_delay_minutes"],
        "doc_md": f"TFX pipeline `{spec.name}` from `{os.path.abspath(spec.source)}` (mimo).",
        "steps": pipeline_steps(pipeline),
    }


def launch_step(plan: dict, step: str, run_id: str, try_number: int = 1) -> None:
    """Runs one step of the pipeline for an Airflow task, as TFX's AirflowComponent does, with
    the retry-safe launcher: a retry of the step in the same DAG run gets an execution of its own
    (pipeline/runners/retry_safe.py)."""
    from tfx.orchestration import data_types, metadata

    from pipeline.runners.retry_safe import RetrySafeLauncher

    spec = load_spec(plan["spec_path"])
    pipeline, _ = local_pipeline(spec, plan["output_dir"], beam_args=plan["beam_args"])
    if pipeline_steps(pipeline) != plan["steps"]:
        raise RuntimeError(
            f"the pipeline built from {plan['spec_path']} no longer has the steps this DAG was "
            "made with (the spec or the code changed since): recompile the DAG file "
            "(`mimo compile airflow`; the bundled DAG file makes a new plan at its next parse)"
        )
    [component] = [c for c in pipeline.components if c.id == step]
    root = pipeline.pipeline_info.pipeline_root
    pipeline.additional_pipeline_args.setdefault("tmp_dir", os.path.join(root, ".temp", ""))
    component._resolve_pip_dependencies(root)  # noqa: SLF001 - as AirflowDagRunner does
    info = pipeline.pipeline_info
    info.run_id = run_id
    # The process is named for whoever must find it (a stuck or killed try).
    print(
        f"[mimo] {step} of {info.pipeline_name}, run {run_id}, try {try_number}, process {os.getpid()}"
    )
    RetrySafeLauncher.create(
        component=component,
        pipeline_info=info,
        driver_args=data_types.DriverArgs(enable_cache=pipeline.enable_cache),
        metadata_connection=metadata.Metadata(pipeline.metadata_connection_config),
        beam_pipeline_args=pipeline.beam_pipeline_args,
        additional_pipeline_args=pipeline.additional_pipeline_args,
        component_config=None,
    ).launch()


def write_plan(settings: dict, path: str) -> None:
    """`python -m pipeline.runners.airflow --plan SETTINGS PATH`: the bundled DAG file's plan."""
    spec = load_spec(settings["spec_path"])
    plan = make_plan(
        spec,
        settings["output_dir"],
        settings["schedule"],
        settings["start_date"],
        settings["beam_args"],
    )
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # Several processes may parse the DAG file at once and each make the plan: each writes its
    # own temporary file, and a reader sees one whole plan or none.
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".plan-")
    with os.fdopen(fd, "w") as f:
        json.dump(plan, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


DAG_FILE = """\
\"\"\"Airflow DAG of the mimo pipeline '{name}', written by `mimo compile airflow`.

Put this file in Airflow's dags folder; Airflow must run from the project's environment. Parsing
it imports Airflow and nothing heavy: the steps and their order were computed from the spec when
the file was written; each task runs its step (TFX) in its own process.
\"\"\"

from pipeline.runners.airflow_dag import dag_from_plan

PLAN = {plan}

DAG = dag_from_plan(PLAN)
"""


class AirflowRunner(Runner):
    name = "airflow"
    doc = "a scheduled Airflow DAG, one task per component (TFX's launcher, retry-safe)"

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
        plan = make_plan(
            spec,
            args.runs,
            args.schedule,
            args.start_date,
            shlex.split(args.beam_args) if args.beam_args else None,
        )
        text = DAG_FILE.format(name=spec.name, plan=pprint.pformat(plan, width=96, indent=1))
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


if __name__ == "__main__":
    if sys.argv[1:2] != ["--plan"] or len(sys.argv) != 4:
        sys.exit("usage: python -m pipeline.runners.airflow --plan SETTINGS_JSON PLAN_FILE")
    try:
        write_plan(json.loads(sys.argv[2]), sys.argv[3])
    except Exception as e:  # the DAG file's import error shows this line
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        print(f"error: {'; '.join(lines)}", file=sys.stderr)
        sys.exit(2)

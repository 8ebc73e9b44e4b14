"""The local runner: TFX's LocalDagRunner with ML Metadata in SQLite under the run's root.

`mimo run --spec SPEC --output DIR` runs the whole pipeline here and prints what it made.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass

from ml_metadata.metadata_store import metadata_store
from tfx import v1 as tfx

from pipeline.pipeline import create_pipeline
from pipeline.runners import Command, Runner, register
from pipeline.runners.beam import BeamArgsError, add_beam_flags, beam_args, options_from_flags
from pipeline.spec import Spec

# The DirectRunner's in-process mode: the fastest on small data and on 2 cores.
# For large data use a distributed Beam runner (see the README's Kubeflow section).
DEFAULT_BEAM_ARGS = ("--direct_running_mode=in_memory", "--direct_num_workers=1")


@dataclass(frozen=True)
class RunPaths:
    pipeline_root: str
    metadata_path: str


def run_paths(spec: Spec, output_dir: str) -> RunPaths:
    output_dir = os.path.abspath(output_dir)
    return RunPaths(
        pipeline_root=os.path.join(output_dir, "pipelines", spec.name),
        metadata_path=os.path.join(output_dir, "metadata", spec.name, "metadata.db"),
    )


def local_pipeline(
    spec: Spec,
    output_dir: str,
    beam_args=DEFAULT_BEAM_ARGS,
    enable_cache: bool = True,
    registry: str | None = None,
    mlflow_tracking_uri: str = "",
    train_steps: int | None = None,
) -> tuple[tfx.dsl.Pipeline, RunPaths]:
    """The pipeline with its artifacts and SQLite ML Metadata under `output_dir`, pushing to
    `registry` (default: <output_dir>/registry); run here, by Airflow or in the notebook."""
    paths = run_paths(spec, output_dir)
    os.makedirs(os.path.dirname(paths.metadata_path), exist_ok=True)
    pipeline = create_pipeline(
        spec,
        pipeline_root=paths.pipeline_root,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            paths.metadata_path
        ),
        beam_pipeline_args=list(beam_args),
        enable_cache=enable_cache,
        registry=registry or os.path.join(os.path.abspath(output_dir), "registry"),
        mlflow_tracking_uri=mlflow_tracking_uri,
        train_steps=train_steps,
    )
    return pipeline, paths


def run_local(spec: Spec, output_dir: str, **options) -> RunPaths:
    """Runs the whole pipeline with the LocalDagRunner; `options` as for local_pipeline."""
    pipeline, paths = local_pipeline(spec, output_dir, **options)
    tfx.orchestration.LocalDagRunner().run(pipeline)
    return paths


def latest_run_outputs(metadata_path: str) -> dict[str, dict[str, list]]:
    """{component id: {output key: [artifact, ...]}} for the newest pipeline run in ML Metadata.

    Artifacts are ml_metadata Artifact protos (uri, type_id, ...); cached executions count, so a
    fully cached run still lists what it reused.
    """
    config = tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path)
    store = metadata_store.MetadataStore(config)
    runs = store.get_contexts_by_type("pipeline_run")
    if not runs:
        return {}
    run = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
    run_executions = {e.id: e for e in store.get_executions_by_context(run.id)}
    outputs: dict[str, dict[str, list]] = {}
    for node in store.get_contexts_by_type("node"):
        component = node.name.split(".", 1)[-1]
        ids = [e.id for e in store.get_executions_by_context(node.id) if e.id in run_executions]
        if not ids:
            continue
        events = [
            ev
            for ev in store.get_events_by_execution_ids(ids)
            if ev.type in (ev.OUTPUT, ev.DECLARED_OUTPUT)
        ]
        artifacts = {a.id: a for a in store.get_artifacts_by_id([ev.artifact_id for ev in events])}
        per_key: dict[str, list] = {}
        for ev in events:
            key = ev.path.steps[0].key if ev.path.steps else "output"
            per_key.setdefault(key, []).append(artifacts[ev.artifact_id])
        outputs[component] = per_key
    return outputs


# -- the `mimo run` command -------------------------------------------------------------------------
class _ProgressOnly(logging.Filter):
    """Lets through errors and the runner's 'Component X is running/finished.' lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        message = record.getMessage()
        return message.startswith("Component ") and message.endswith(
            (" is running.", " is finished.")
        )


def configure_logging(verbose: bool) -> None:
    """One handler on the root logger; unless verbose, it shows progress and errors only."""
    from absl import logging as absl_logging

    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    if not verbose:
        handler.addFilter(_ProgressOnly())
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    absl_logging.set_verbosity(absl_logging.INFO)
    if not verbose:  # TensorFlow's logger has a handler of its own and does not propagate
        logging.getLogger("tensorflow").setLevel(logging.ERROR)


def _find_cause(exc: BaseException, cls) -> BaseException | None:
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, cls):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


class LocalRunner(Runner):
    name = "local"
    doc = "TFX's LocalDagRunner on this machine, ML Metadata in SQLite"

    def commands(self):
        return {"run": Command("run the pipeline locally (LocalDagRunner)", self.add_run, self.run)}

    def add_run(self, parser) -> None:
        parser.add_argument(
            "--output",
            default="runs",
            help="directory for pipeline artifacts and ML Metadata (default: ./runs)",
        )
        add_beam_flags(parser)
        parser.add_argument(
            "--beam-arg",
            action="append",
            metavar="ARG",
            help="extra Beam pipeline argument, e.g. --beam-arg=--direct_num_workers=2",
        )
        parser.add_argument(
            "--registry", help="model registry directory (default: OUTPUT/registry)"
        )
        parser.add_argument("--mlflow-tracking-uri", help="also register blessed models in MLflow")
        parser.add_argument("--no-cache", action="store_true", help="re-run every component")
        parser.add_argument(
            "--verbose", action="store_true", help="show every log line of TFX and Beam"
        )

    def run(self, spec: Spec, args) -> int:
        from components.errors import DataValidationError
        from pipeline.evaluation.report import print_run

        configure_logging(args.verbose)
        try:
            beam = beam_args(options_from_flags(args)) + list(args.beam_arg or [])
        except BeamArgsError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(
            f"Running pipeline '{spec.name}' on {spec.data.path} -> {os.path.abspath(args.output)}"
        )
        try:
            paths = run_local(
                spec,
                args.output,
                beam_args=beam,
                enable_cache=not args.no_cache,
                registry=args.registry,
                mlflow_tracking_uri=args.mlflow_tracking_uri or "",
            )
        except Exception as e:  # noqa: BLE001 - reduce known data errors to their message
            cause = _find_cause(e, DataValidationError)
            if cause is None:
                raise
            # Beam appends the step a DoFn's error came from; the message names the file already.
            message = re.sub(r" \[while running '[^']*'\]$", "", str(cause))
            print(f"\nerror: {message}", file=sys.stderr)
            return 3
        print_run(spec, latest_run_outputs(paths.metadata_path), paths.metadata_path)
        return 0


register(LocalRunner())

"""The local runner: TFX's LocalDagRunner with ML Metadata in SQLite under the run's root.

`mimo run --spec SPEC --output DIR` runs the whole pipeline here and prints what it made.
`mimo compare --spec SPEC --output DIR` runs it up to Transform (cached when a run made it) and
compares, per head, the multi-output model with single-head models and boosted trees.
"""

from __future__ import annotations

import dataclasses
import datetime
import fcntl
import glob
import json
import logging
import os
import re
import shutil
import socket
import sys
import traceback
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.dsl.compiler import compiler
from tfx.dsl.compiler import constants as tfx_constants
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.orchestration.metadata import sqlite_metadata_connection_config
from tfx.orchestration.pipeline import Pipeline
from tfx.orchestration.portable import partial_run_utils, runtime_parameter_utils
from tfx.proto.orchestration import pipeline_pb2

from pipeline import console
from pipeline.pipeline import create_pipeline
from pipeline.runners import Command, Runner, register
from pipeline.runners.beam import (
    BeamArgsError,
    BeamOptions,
    add_beam_flags,
    beam_args,
    check_beam_args,
    options_from_flags,
)
from pipeline.spec import Spec

# The DirectRunner's in-process mode (Beam's default, so no argument): the fastest on small data
# and on 2 cores. For large data use a distributed Beam runner (see the README's scale-out section).
DEFAULT_BEAM_ARGS = tuple(beam_args(BeamOptions()))


@dataclass(frozen=True)
class RunPaths:
    pipeline_root: str
    metadata_path: str
    run_id: str | None = None  # this run's id in ML Metadata (its `pipeline_run` context)


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
) -> tuple[Pipeline, RunPaths]:
    """The pipeline with its artifacts and SQLite ML Metadata under `output_dir`, pushing to
    `registry` (default: <output_dir>/registry); run here, by Airflow or in the notebook."""
    paths = run_paths(spec, output_dir)
    os.makedirs(os.path.dirname(paths.metadata_path), exist_ok=True)
    pipeline = create_pipeline(
        spec,
        pipeline_root=paths.pipeline_root,
        metadata_connection_config=sqlite_metadata_connection_config(paths.metadata_path),
        beam_pipeline_args=list(beam_args),
        enable_cache=enable_cache,
        registry=registry or os.path.join(os.path.abspath(output_dir), "registry"),
        mlflow_tracking_uri=mlflow_tracking_uri,
        train_steps=train_steps,
    )
    return pipeline, paths


def run_local(spec: Spec, output_dir: str, to_node: str | None = None, **options) -> RunPaths:
    """Runs the whole pipeline (or, with `to_node`, what that component needs and the
    component itself: TFX's partial run) with the LocalDagRunner; `options` as for
    local_pipeline.

    The run holds the output directory's lock (a second run of the pipeline there is refused
    with RunLockedError), first cleans up what a run killed with kill -9 left there, and gets an
    id of its own (TFX's is the start time alone), returned in the RunPaths, so that what it
    reports is its own execution."""
    pipeline, paths = local_pipeline(spec, output_dir, **options)
    with output_lock(paths):
        for line in clean_up_killed_runs(paths, spec.name):
            print(f"Cleaned up {line}")
        run_id = f"{datetime.datetime.now().isoformat()}-{uuid.uuid4().hex[:8]}"
        ir = compiler.Compiler().compile(pipeline)
        runtime_parameter_utils.substitute_runtime_parameter(
            ir, {tfx_constants.PIPELINE_RUN_ID_PARAMETER_NAME: run_id}
        )
        run_options = None
        if to_node:
            run_options = pipeline_pb2.RunOptions(
                partial_run=pipeline_pb2.PartialRun(
                    to_nodes=[to_node],
                    snapshot_settings=partial_run_utils.latest_pipeline_snapshot_settings(),
                )
            )
        LocalDagRunner().run_with_ir(ir, run_options=run_options)
    return dataclasses.replace(paths, run_id=run_id)


def _metadata_store(metadata_path: str) -> metadata_store.MetadataStore:
    config = sqlite_metadata_connection_config(metadata_path)
    return metadata_store.MetadataStore(config)


def latest_run_outputs(metadata_path: str, run_id: str | None = None) -> dict[str, dict[str, list]]:
    """{component id: {output key: [artifact, ...]}} for the run `run_id` (default: the newest
    pipeline run) in ML Metadata.

    Artifacts are ml_metadata Artifact protos (uri, type_id, ...); cached executions count, so a
    fully cached run still lists what it reused.
    """
    store = _metadata_store(metadata_path)
    runs = store.get_contexts_by_type("pipeline_run")
    if run_id is not None:
        runs = [c for c in runs if c.name == run_id]
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


def clean_up_killed_runs(paths: RunPaths, pipeline_name: str) -> list[str]:
    """What a run killed with kill -9 left: executions still NEW or RUNNING in ML Metadata, their
    half-written output folders and working directories. Call it holding output_lock (no other
    run of the pipeline is active, so nothing running is really running): the executions are
    marked CANCELED and their folders removed. Returns one line per execution cleaned."""
    if not os.path.exists(paths.metadata_path):
        return []
    store = _metadata_store(paths.metadata_path)
    unfinished = (metadata_store_pb2.Execution.NEW, metadata_store_pb2.Execution.RUNNING)
    cleaned = []
    for execution in store.get_executions():
        if execution.last_known_state not in unfinished:
            continue
        nodes = [
            c.name[len(pipeline_name) + 1 :]
            for c in store.get_contexts_by_execution(execution.id)
            if c.name.startswith(pipeline_name + ".")
        ]
        removed = []
        for node in nodes:
            node_dir = os.path.join(paths.pipeline_root, node)
            system = os.path.join(node_dir, ".system")
            folders = glob.glob(os.path.join(node_dir, "*", str(execution.id)))
            folders.append(os.path.join(system, "executor_execution", str(execution.id)))
            folders += glob.glob(os.path.join(system, "stateful_working_dir", "*"))
            for folder in folders:
                if os.path.isdir(folder):
                    shutil.rmtree(folder)
                    removed.append(folder)
        execution.last_known_state = metadata_store_pb2.Execution.CANCELED
        store.put_executions([execution])
        cleaned.append(
            f"{'/'.join(nodes) or 'an execution'} (execution {execution.id}) of a run that was "
            f"killed: marked canceled, {len(removed)} unfinished folder(s) removed"
        )
    return cleaned


class RunLockedError(RuntimeError):
    """Another run holds this output directory for this pipeline."""


@contextmanager
def output_lock(paths: RunPaths):
    """Holds `<metadata folder>/run.lock` for the run; a second `mimo run` of the same pipeline
    on the same output directory is refused at once, naming the holder. The lock is the kernel's
    (flock): it goes with the process, even one killed with kill -9."""
    path = os.path.join(os.path.dirname(paths.metadata_path), "run.lock")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    f = open(path, "a+")  # noqa: SIM115 - held for the whole run
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise RunLockedError(
                f"{os.path.dirname(os.path.dirname(os.path.dirname(path)))} is in use by "
                f"another run of this pipeline ({holder}); wait for it or use another --output"
            ) from None
        f.seek(0)
        f.truncate()
        started = datetime.datetime.now().isoformat(timespec="seconds")
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": started}))
        f.flush()
        yield
    finally:
        f.close()


# -- the `mimo run` command -------------------------------------------------------------------------
class _ProgressOnly(logging.Filter):
    """Lets through the runner's 'Component X is running/finished.' lines and its errors
    (TFX logs through absl), not Beam's: Beam and its job services log a failed step's
    tracebacks as errors, and the run's own error line says what failed."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return record.name == "absl" or record.name.startswith("tfx")
        message = record.getMessage()
        return message.startswith("Component ") and message.endswith(
            (" is running.", " is finished.")
        )


def configure_logging(verbose: bool, log=None) -> None:
    """Verbose: every record on stderr. Else progress and errors on the terminal, and every
    record in `log` (the run's full log, pipeline/console.py) when there is one."""
    from absl import logging as absl_logging

    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    full = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(full)
        root.addHandler(handler)
    else:
        root.addHandler(console.terminal_handler(_ProgressOnly()))
        if log is not None:
            import tf_keras

            handler = logging.StreamHandler(log.stream)
            handler.setFormatter(full)
            root.addHandler(handler)
            tf_keras.utils.disable_interactive_logging()  # epoch lines: log records, not prints
    root.setLevel(logging.INFO)
    absl_logging.set_verbosity(absl_logging.INFO)
    tf_logger = logging.getLogger("tensorflow")  # it has a handler of its own: use ours
    for handler in list(tf_logger.handlers):
        tf_logger.removeHandler(handler)
    tf_logger.propagate = True
    if not verbose and log is None:
        tf_logger.setLevel(logging.ERROR)


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
        return {
            "run": Command("run the pipeline locally (LocalDagRunner)", self.add_run, self.run),
            "compare": Command(
                "per head on the eval split: the multi-output model vs single-head models vs "
                "boosted trees (runs the pipeline up to Transform, cached)",
                self.add_compare,
                self.compare,
            ),
        }

    def add_compare(self, parser) -> None:
        self.add_common(parser)
        parser.add_argument(
            "--seeds", type=int, default=1, help="train each model with this many seeds (mean ± sd)"
        )

    def add_run(self, parser) -> None:
        self.add_common(parser)
        parser.add_argument(
            "--registry", help="model registry directory (default: OUTPUT/registry)"
        )
        parser.add_argument("--mlflow-tracking-uri", help="also register blessed models in MLflow")
        parser.add_argument("--no-cache", action="store_true", help="re-run every component")

    def add_common(self, parser) -> None:
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
            "--verbose",
            action="store_true",
            help="show every log line of TFX, Beam and TensorFlow here (default: progress and "
            "results here, everything in OUTPUT/logs/run-*.log)",
        )

    def run(self, spec: Spec, args) -> int:
        from pipeline.evaluation.report import print_run

        print(
            f"Running pipeline '{spec.name}' on {spec.data.path} -> {os.path.abspath(args.output)}"
        )
        paths = self._run_pipeline(
            spec,
            args,
            enable_cache=not args.no_cache,
            registry=args.registry,
            mlflow_tracking_uri=args.mlflow_tracking_uri or "",
        )
        if isinstance(paths, int):
            return paths
        print_run(spec, latest_run_outputs(paths.metadata_path, paths.run_id), paths.metadata_path)
        if full_log := _full_log_line():
            print(full_log)
        return 0

    def compare(self, spec: Spec, args) -> int:
        from trainer.compare import compare, format_table, transformed_splits

        if args.seeds < 1:
            print(f"error: --seeds must be at least 1, got {args.seeds}", file=sys.stderr)
            return 2
        print(
            f"Comparing models for '{spec.name}' on {spec.data.path}: the pipeline up to "
            f"Transform -> {os.path.abspath(args.output)}"
        )
        paths = self._run_pipeline(spec, args, to_node="Transform")
        if isinstance(paths, int):
            return paths
        outputs = latest_run_outputs(paths.metadata_path, paths.run_id)
        with console.stderr_to_log_only():
            result = compare(
                transformed_splits(outputs, spec),
                seeds=range(1, args.seeds + 1),
                log=lambda message: print(f"  {message}", flush=True),
            )
        print(format_table(result))
        if full_log := _full_log_line():
            print(full_log)
        return 0

    def _run_pipeline(self, spec: Spec, args, **options) -> RunPaths | int:
        """run_local with the flags' Beam arguments; an exit code when it fails (the message
        here, the traceback in the full log)."""
        log = console.active_log()
        configure_logging(args.verbose, log)
        try:
            beam = beam_args(options_from_flags(args)) + list(args.beam_arg or [])
            check_beam_args(beam)
        except BeamArgsError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        full_log = _full_log_line()
        try:
            with console.stderr_to_log_only():
                return run_local(spec, args.output, beam_args=beam, **options)
        except RunLockedError as e:
            print(f"error: {e}", file=sys.stderr)
            return 4
        except Exception as e:  # noqa: BLE001 - the message here, the traceback in the log
            if log is not None:
                traceback.print_exc(file=log.stream)
            message = _data_error(e)
            if message is not None:
                print(f"\nerror: {message}{full_log}", file=sys.stderr)
                return 3
            if log is None:
                raise
            print(f"\nerror: {_brief(e)}{full_log}", file=sys.stderr)
            return 1


def _full_log_line() -> str:
    """The line naming the run's full log; empty with --verbose (there is none)."""
    log = console.active_log()
    return f"\nFull log: {log.path}" if log else ""


def _data_error(exc: BaseException) -> str | None:
    """The message of a DataValidationError behind `exc`: found by type when the step ran in
    this process, by its text when a portable runner's worker sent it back as text."""
    from components.errors import DataValidationError

    cause = _find_cause(exc, DataValidationError)
    if cause is not None:
        message = str(cause)
    else:
        found = re.findall(rf"{DataValidationError.__name__}: (.+)", str(exc))
        if not found:
            return None
        message = found[-1]
    # Beam appends the step a DoFn's error came from; the message names the file already.
    return re.sub(r" \[while running '[^']*'\]$", "", message)


def _brief(exc: BaseException, limit: int = 600) -> str:
    """An unexpected error in a few lines: its type and message, not its traceback."""
    text = f"{type(exc).__name__}: {exc}".strip()
    return text if len(text) <= limit else text[:limit] + " ... (the rest is in the log)"


register(LocalRunner())

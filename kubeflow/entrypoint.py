"""The command of every compiled Kubeflow step: TFX's container entrypoint, made to accept what
the open-source Kubeflow Pipelines v2 backend hands a task.

TFX's `kubeflow_v2_run_executor` is written for Vertex AI Pipelines. On the open-source backend
(its driver and launcher in kubeflow/pipelines `backend/src/v2/`) a task's `ExecutorInput`
differs in ways that entrypoint does not survive, so this module adjusts the ExecutorInput and
then runs TFX's own entrypoint on it, unchanged:

1. Artifact types. TFX finds an artifact's Python class from its type's schema title
   (`tfx.Examples`). An input artifact read back from ML Metadata arrives with an empty
   `instanceSchema` (KFP 2.0-2.3: `ToRuntimeArtifact` leaves the schema out), with no type at
   all, or, as other backends report, titled `system.Artifact`; the step's compiled input
   definitions (`--json_serialized_inputs_spec_args`, in every compiled step's args) say what
   each input is, so each artifact gets its declared type back.
2. Artifact names. TFX's Evaluator step turns its input models' names (the backend gives the
   MLMD id, e.g. "17") into ids and back; an input without a name (a pipeline-level input
   artifact) gets a stable one from its URI.
3. Remote URIs. The launcher downloads inputs to, and uploads outputs from, local mounts
   (`minio://b/p` -> `/minio/b/p`, `s3://` -> `/s3/`), as the KFP SDK's own components use them;
   TensorFlow cannot open `minio://` at all. Those URIs are mapped to the local mounts for the
   executor and back in its ExecutorOutput. `gs://` stays remote: TensorFlow writes it directly,
   which Beam workers on Dataflow need (they cannot see this pod's disk).
4. The file-based ExampleGen's driver (`lifecycle.preCacheCheck` in the compiled spec) is run by
   Vertex only; the open-source backend ignores it. When its output (span, version, input
   fingerprint, the resolved input patterns) is not there, it is computed here with TFX's own
   driver code before the executor runs, as Vertex would have.

Every adjustment is logged. The mounts are pipeline/mounts.py's (steps that record an artifact's
URI for other steps map it back with the same module).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

import yaml

from pipeline.mounts import to_local, to_remote

TFX_RUN_EXECUTOR = "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"


def _log(message: str) -> None:
    print(f"[mimo entrypoint] {message}", file=sys.stderr, flush=True)


def _flag(argv: list[str], name: str) -> int | None:
    """Index of the value of `--name value` in argv."""
    for i, arg in enumerate(argv[:-1]):
        if arg == name:
            return i + 1
    return None


def _title(artifact_type: dict) -> str:
    if artifact_type.get("schemaTitle"):
        return artifact_type["schemaTitle"]
    schema = artifact_type.get("instanceSchema")
    if schema:
        return (yaml.safe_load(schema) or {}).get("title", "")
    return ""


def _is_tfx_type(title: str) -> bool:
    from tfx.orchestration.kubeflow.v2 import compiler_utils

    if title in compiler_utils.TITLE_TO_CLASS_PATH:
        return True
    module, _, name = title.rpartition(".")  # a custom type: its class path is the title
    if not module or title.startswith("system."):
        return False
    try:
        return hasattr(__import__(module, fromlist=[name]), name)
    except ImportError:
        return False


def adjust(executor_input: dict, inputs_spec: dict) -> list[str]:
    """Makes an ExecutorInput from the open-source backend what TFX's entrypoint expects;
    returns what was changed."""
    changes = []
    declared = {
        key: spec.get("artifactType", {})
        for key, spec in (inputs_spec.get("artifacts") or {}).items()
    }
    for side in ("inputs", "outputs"):
        for key, artifact_list in (executor_input.get(side, {}).get("artifacts") or {}).items():
            for artifact in artifact_list.get("artifacts", []):
                title = _title(artifact.get("type", {}))
                if side == "inputs" and not _is_tfx_type(title) and key in declared:
                    artifact["type"] = dict(declared[key])
                    changes.append(f"{side} {key}: type {title or '(none)'} -> declared type")
                if side == "inputs" and not artifact.get("name"):
                    uri_id = hashlib.sha256(artifact.get("uri", "").encode()).hexdigest()[:16]
                    artifact["name"] = f"artifacts/{uri_id}"
                    changes.append(f"{side} {key}: no name -> {artifact['name']}")
                local = to_local(artifact.get("uri", ""))
                if local != artifact.get("uri", ""):
                    changes.append(f"{side} {key}: {artifact['uri']} read/written at {local}")
                    artifact["uri"] = local
    return changes


def _is_example_gen(executor_class_path: str) -> bool:
    from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
    from tfx.utils import import_utils

    return issubclass(
        import_utils.import_class_by_path(executor_class_path), BaseExampleGenExecutor
    )


def run_example_gen_driver(executor_input: dict, inputs_spec: dict) -> None:
    """TFX's file-based ExampleGen driver, as Vertex runs it before the executor."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx.orchestration.kubeflow.v2.file_based_example_gen import driver

    message = pipeline_spec_pb2.ExecutorInput()
    json_format.ParseDict(executor_input, message, ignore_unknown_fields=True)
    spec = pipeline_spec_pb2.ComponentInputsSpec()
    json_format.ParseDict(inputs_spec, spec, ignore_unknown_fields=True)
    driver._run_driver(message, spec)  # noqa: SLF001 - TFX's own driver, unchanged


def remote_output(output_file: str, driver_output: dict) -> None:
    """Maps the local mounts in the ExecutorOutput (artifacts' URIs and paths in their metadata)
    back to the URIs the launcher gave, and keeps what a driver said about the outputs
    (ExampleGen: span, version, input fingerprint; the driver's word wins): the launcher records
    only the last ExecutorOutput, which the executor writes without them."""
    with open(output_file) as f:
        output = json.load(f)
    for key, artifact_list in (output.get("artifacts") or {}).items():
        driven = (driver_output.get("artifacts", {}).get(key, {}).get("artifacts") or [{}])[0]
        for artifact in artifact_list.get("artifacts", []):
            artifact["uri"] = to_remote(artifact.get("uri", ""))
            metadata = {**artifact.get("metadata", {}), **driven.get("metadata", {})}
            # URIs a step records about other artifacts (the blessing's baseline and candidate)
            artifact["metadata"] = {
                k: to_remote(v) if isinstance(v, str) else v for k, v in metadata.items()
            }
    with open(output_file, "w") as f:
        json.dump(output, f)


def main(argv: list[str]) -> None:
    invocation = _flag(argv, "--json_serialized_invocation_args")
    spec_at = _flag(argv, "--json_serialized_inputs_spec_args")
    class_at = _flag(argv, "--executor_class_path")
    if invocation is None or class_at is None:
        raise SystemExit(
            "error: --executor_class_path and --json_serialized_invocation_args are required"
        )
    executor_input = json.loads(argv[invocation])
    inputs_spec = json.loads(argv[spec_at]) if spec_at is not None else {}
    for change in adjust(executor_input, inputs_spec):
        _log(change)
    output_file = executor_input.get("outputs", {}).get("outputFile", "")
    executor_class = argv[class_at]
    driver_output = {}
    if output_file and not os.path.exists(output_file) and _is_example_gen(executor_class):
        _log("no ExampleGen driver output (the backend skips preCacheCheck): running TFX's driver")
        run_example_gen_driver(executor_input, inputs_spec)
        with open(output_file) as f:
            driver_output = json.load(f)
    argv = list(argv)
    argv[invocation] = json.dumps(executor_input)
    from absl import app
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor as tfx_entry

    sys.argv = [TFX_RUN_EXECUTOR, *argv]
    try:
        app.run(tfx_entry.main, flags_parser=tfx_entry._parse_flags)  # noqa: SLF001
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    if output_file and os.path.exists(output_file):
        remote_output(output_file, driver_output)


if __name__ == "__main__":
    main(sys.argv[1:])

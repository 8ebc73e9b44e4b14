"""A launcher-contract harness: runs a compiled KFP v2 package the way the open-source Kubeflow
Pipelines backend (2.0-2.3, Argo) runs it, without a cluster.

What it reproduces, from kubeflow/pipelines `backend/src/v2/` (driver.go, launcher_v2.go,
metadata/client.go, expression/expression.go):
- tasks in DAG order (`dependentTasks` and the producers of their inputs);
- each task's ExecutorInput as the driver builds it: `parameterValues` (constants, pipeline
  parameters with their defaults, nothing for an optional parameter without a value); input
  artifacts as read back from ML Metadata: `name` the MLMD id ("17"), `type` with an empty
  `instanceSchema`, `metadata` the upstream ExecutorOutput's metadata plus `display_name`;
  output artifacts without a name, typed as the component declares, at
  `<pipeline root>/<pipeline name>/<run id>/<task name>/<output key>`;
  `outputFile` `/tmp/kfp_outputs/output_metadata.json` of the task's pod;
- the trigger condition, evaluated on that ExecutorInput before any output is provisioned (the
  forms TFX emits: `inputs.artifacts['k'].artifacts[0].metadata['m'] == <number>`, `&&`); a false
  one skips the task and everything that depends on it;
- the launcher: every task runs in a fresh "pod" (its own folder standing in for the pod's
  disk, `MIMO_KFP_LOCAL_MOUNT`); input artifacts are downloaded from the object store to the
  local mounts (`minio://b/p` -> `/minio/b/p`), the container's **own command and args from the
  compiled spec** run with `{{$}}` replaced by the ExecutorInput JSON (`python` is the project's
  .venv standing in for the image), then output artifacts are uploaded from the local mounts
  (a missing folder uploads nothing) and only `uri` and `metadata` of the ExecutorOutput are kept;
- `lifecycle.preCacheCheck` is ignored and `resolver` executors are refused, as the backend does.

What it cannot show: scheduling, pod resources and limits, volumes, images, networking, the
object store's own semantics (here a folder), KFP's cache, retries, and the UI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field

import yaml

OUTPUT_FILE = "/tmp/kfp_outputs/output_metadata.json"
STORE_SCHEMES = {"minio://": "minio"}


class LauncherError(RuntimeError):
    pass


@dataclass
class TaskResult:
    name: str
    state: str  # SUCCEEDED, SKIPPED (condition false or an upstream skipped), FAILED
    seconds: float = 0.0
    outputs: dict = field(default_factory=dict)  # key -> runtime artifact (uri, metadata, ...)
    log: str = ""


def _topological(tasks: dict) -> list[str]:
    def upstream(task: dict) -> set[str]:
        found = set(task.get("dependentTasks", []))
        for source in task.get("inputs", {}).get("artifacts", {}).values():
            if "taskOutputArtifact" in source:
                found.add(source["taskOutputArtifact"]["producerTask"])
        return found

    order, done = [], set()
    pending = dict(sorted(tasks.items()))
    while pending:
        ready = [n for n, t in pending.items() if upstream(t) <= done]
        if not ready:
            raise LauncherError(f"a cycle or an unknown upstream among {sorted(pending)}")
        for name in ready:
            order.append(name)
            done.add(name)
            del pending[name]
    return order


_CONDITION = re.compile(
    r"^inputs\.artifacts\['([^']+)'\]\.artifacts\[0\]\.metadata\['([^']+)'\]\s*==\s*"
    r"(-?\d+(?:\.\d+)?)$"
)


def evaluate_condition(condition: str, executor_input: dict) -> bool:
    """The CEL forms TFX 1.16 emits for a Cond on an artifact's custom property. An input that is
    not there is an error, as in the driver (CEL: no such key)."""
    result = True
    for term in condition.split("&&"):
        # TFX wraps each term, and an `&&` of terms, in parentheses; a term has none of its own.
        term = term.strip().strip("()").strip()
        match = _CONDITION.match(term)
        if not match:
            raise LauncherError(f"condition form not reproduced by this harness: {term!r}")
        key, meta, number = match.groups()
        artifacts = executor_input["inputs"].get("artifacts", {})
        if key not in artifacts:
            raise LauncherError(f"condition {condition!r}: no such key: {key!r} in the inputs")
        value = artifacts[key]["artifacts"][0].get("metadata", {}).get(meta)
        if value is None:
            raise LauncherError(f"condition {condition!r}: no such key: {meta!r} in metadata")
        result = result and float(value) == float(number)
    return result


class Launcher:
    """Runs a compiled package's tasks; `store` stands in for the object store (MinIO)."""

    def __init__(self, package: str, work_dir: str, python: str = sys.executable, env=None):
        with open(package) as f:
            self.ir = yaml.safe_load(f)
        self.work_dir = work_dir
        self.store = os.path.join(work_dir, "objectstore")
        self.python = python
        self.env = dict(os.environ if env is None else env)
        self._next_id = 1

    def store_path(self, uri: str) -> str:
        for scheme, folder in STORE_SCHEMES.items():
            if uri.startswith(scheme):
                return os.path.join(self.store, folder, uri[len(scheme) :])
        raise LauncherError(f"{uri}: this harness's store holds only minio:// URIs")

    def _parameters(self, task: dict, component: dict, run_params: dict) -> dict:
        values = {}
        declared = component.get("inputDefinitions", {}).get("parameters", {})
        for key, source in task.get("inputs", {}).get("parameters", {}).items():
            if "runtimeValue" in source:
                values[key] = source["runtimeValue"]["constant"]
            elif "componentInputParameter" in source:
                name = source["componentInputParameter"]
                if name in run_params:
                    values[key] = run_params[name]
            else:
                raise LauncherError(f"parameter source not reproduced: {source}")
            if key in values and declared.get(key, {}).get("parameterType") == "STRING":
                values[key] = values[key] if isinstance(values[key], str) else str(values[key])
        return values

    def run(self, run_id: str, parameters: dict | None = None, pipeline_root=None) -> dict:
        """Runs every task; returns {task name: TaskResult}. Stops at the first failed task."""
        ir = self.ir
        root = ir["root"]
        executors = ir["deploymentSpec"]["executors"]
        for label, executor in executors.items():
            if "container" not in executor and "importer" not in executor:
                kind = next(iter(executor))
                raise LauncherError(f"executor {label}: {kind} executors not implemented")
        run_params = {
            name: p["defaultValue"]
            for name, p in root.get("inputDefinitions", {}).get("parameters", {}).items()
            if "defaultValue" in p
        }
        run_params.update(parameters or {})
        pipeline_root = pipeline_root or "minio://mlpipeline/v2/artifacts"
        run_root = f"{pipeline_root}/{ir['pipelineInfo']['name']}/{run_id}"
        results: dict[str, TaskResult] = {}
        for name in _topological(root["dag"]["tasks"]):
            task = root["dag"]["tasks"][name]
            upstream = set(task.get("dependentTasks", []))
            if any(results[u].state != "SUCCEEDED" for u in upstream):
                results[name] = TaskResult(name, "SKIPPED")  # Argo: depends on X.Succeeded
                continue
            component = ir["components"][task["componentRef"]["name"]]
            executor = executors[component["executorLabel"]]
            results[name] = self._run_task(
                name, task, component, executor, run_params, run_root, results, run_id
            )
            if results[name].state == "FAILED":
                raise LauncherError(f"task {name} failed:\n{results[name].log[-6000:]}")
        return results

    def _run_task(self, name, task, component, executor, run_params, run_root, results, run_id):
        inputs = {"parameterValues": self._parameters(task, component, run_params)}
        artifacts = {}
        for key, source in task.get("inputs", {}).get("artifacts", {}).items():
            upstream = source["taskOutputArtifact"]
            produced = results[upstream["producerTask"]].outputs[upstream["outputArtifactKey"]]
            artifacts[key] = {
                "artifacts": [
                    {
                        "name": produced["name"],
                        "type": {"instanceSchema": ""},
                        "uri": produced["uri"],
                        "metadata": dict(
                            produced["metadata"], display_name=upstream["outputArtifactKey"]
                        ),
                    }
                ]
            }
        if artifacts:
            inputs["artifacts"] = artifacts
        executor_input = {"inputs": inputs}
        condition = task.get("triggerPolicy", {}).get("condition")
        if condition and not evaluate_condition(condition, executor_input):
            return TaskResult(name, "SKIPPED")
        outputs = {}
        for key, definition in component.get("outputDefinitions", {}).get("artifacts", {}).items():
            outputs[key] = {
                "artifacts": [
                    {"type": definition["artifactType"], "uri": f"{run_root}/{name}/{key}"}
                ]
            }
        pod = os.path.join(self.work_dir, "pods", run_id, name)
        output_file = pod + OUTPUT_FILE
        executor_input["outputs"] = {"artifacts": outputs, "outputFile": output_file}
        local = os.path.join(pod, "")  # the pod's disk: /minio/... lives under it
        for artifact_list in artifacts.values():  # downloadArtifacts
            uri = artifact_list["artifacts"][0]["uri"]
            src = self.store_path(uri)
            dst = os.path.join(local, "minio", uri[len("minio://") :])
            if os.path.isdir(src):
                shutil.copytree(src, dst, dirs_exist_ok=True)
            elif os.path.exists(src):
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copy2(src, dst)
        for artifact_list in outputs.values():  # prepareOutputFolders: the parents only
            uri = artifact_list["artifacts"][0]["uri"]
            path = os.path.join(local, "minio", uri[len("minio://") :])
            os.makedirs(os.path.dirname(path), exist_ok=True)
        os.makedirs(os.path.dirname(output_file), exist_ok=True)

        container = executor["container"]
        placeholder = json.dumps(executor_input)
        command = [placeholder if a == "{{$}}" else a for a in container["command"]]
        args = [placeholder if a == "{{$}}" else a for a in container.get("args", [])]
        for a in command + args:
            if "{{$" in a:
                raise LauncherError(f"{name}: placeholder not reproduced by this harness: {a}")
        if command[0] == "python":  # the image's python: the project's .venv
            command[0] = self.python
        env = dict(self.env, MIMO_KFP_LOCAL_MOUNT=local)
        start = time.time()
        proc = subprocess.run(
            command + args, env=env, cwd=pod, capture_output=True, text=True, timeout=1200
        )
        result = TaskResult(name, "SUCCEEDED", seconds=time.time() - start)
        result.log = proc.stdout + proc.stderr
        if proc.returncode != 0:
            result.state = "FAILED"
            return result
        executor_output = {}
        if os.path.exists(output_file):
            with open(output_file) as f:
                executor_output = json.load(f)
        for key, artifact_list in outputs.items():  # uploadOutputArtifacts
            provisioned = artifact_list["artifacts"][0]
            returned = (executor_output.get("artifacts", {}).get(key, {}).get("artifacts") or [{}])[
                0
            ]
            uri = returned.get("uri") or provisioned["uri"]
            path = os.path.join(local, "minio", uri[len("minio://") :])
            if os.path.exists(path):  # a missing local path is only a warning in KFP
                dst = self.store_path(uri)
                if os.path.isdir(path):
                    shutil.copytree(path, dst, dirs_exist_ok=True)
                else:
                    os.makedirs(os.path.dirname(dst), exist_ok=True)
                    shutil.copy2(path, dst)
            result.outputs[key] = {
                "name": str(self._next_id),  # the MLMD id the driver hands downstream
                "uri": uri,
                "metadata": dict(provisioned.get("metadata", {}), **returned.get("metadata", {})),
            }
            self._next_id += 1
        shutil.rmtree(os.path.join(local, "minio"), ignore_errors=True)  # the pod is gone
        return result

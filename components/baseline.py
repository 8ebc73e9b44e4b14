"""The baseline a candidate is compared with: the model that is published now.

`PublishedBaseline` is an ordinary container component (a parameter-only input, one Model
output), so every orchestrator runs it, open-source Kubeflow Pipelines included, which cannot run
TFX's `Resolver` (its backend implements no `resolver` executor). At the start of a run it reads
what is published (the registry's newest complete version; with MLflow, the version its
`champion` alias points at, which is what a rollback there moves) and copies that SavedModel into
its output Model artifact (`<uri>/Format-Serving`, the Trainer's layout), next to
`mimo_baseline.json` saying where it came from. When nothing is published (a first run), or the
published model was exported under another model contract, the artifact holds only
`mimo_baseline.json` with `found: false` and why, and the `Evaluator` below evaluates without a
baseline (value thresholds only, TFX's own first-run behaviour).

A model exported under another model contract (components/contract.py) is not compared with.
"""

import json
import os
import tempfile

import tensorflow as tf
from tfx.components.evaluator import component as tfx_evaluator
from tfx.components.evaluator import executor as tfx_evaluator_executor
from tfx.dsl.component.experimental.annotations import OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_artifacts, standard_component_specs

from components.contract import MODEL_CONTRACT, SERVING_DIR, saved_model_contract
from components.registry import copy_tree, open_registry
from pipeline import constants
from pipeline.monitoring.drift import MONITORING_DIR
from pipeline.mounts import to_remote

BASELINE_FILE = "mimo_baseline.json"  # in the baseline Model artifact: what it is
MLFLOW_ALIAS = "champion"


def published(registry: str, model_name: str, mlflow_tracking_uri: str, download_dir: str):
    """(SavedModel directory, what it is) of the published model, or (None, why there is none)."""
    if mlflow_tracking_uri:
        import mlflow
        from mlflow.exceptions import MlflowException

        mlflow.set_tracking_uri(mlflow_tracking_uri)
        try:
            version = mlflow.MlflowClient().get_model_version_by_alias(model_name, MLFLOW_ALIAS)
        except MlflowException:
            return None, f"no MLflow model {model_name}@{MLFLOW_ALIAS} at {mlflow_tracking_uri}"
        from components.mlflow_model import saved_model_path

        downloaded = mlflow.artifacts.download_artifacts(  # MLflow downloads to a local folder
            artifact_uri=f"models:/{model_name}@{MLFLOW_ALIAS}", dst_path=download_dir
        )
        # A pyfunc model (components/mlflow_model.py): the SavedModel is one of its artifacts,
        # with the registry version's model_card.json beside it.
        path = saved_model_path(downloaded)
        return path, {
            "source": f"mlflow {mlflow_tracking_uri} {model_name}@{MLFLOW_ALIAS}",
            "mlflow_version": str(version.version),
            "version": _card(path).get("version"),
        }
    reg = open_registry(registry)
    version = reg.latest(model_name)
    if version is None:
        return None, f"nothing published as {model_name} in {reg.root}"
    return reg.path(model_name, version), {
        "source": f"registry {reg.root}",
        "version": version,
    }


def resolve_baseline(
    registry: str, model_name: str, mlflow_tracking_uri: str, output_uri: str
) -> dict:
    """Fills the baseline Model artifact at output_uri; returns what `mimo_baseline.json` says."""
    tf.io.gfile.makedirs(output_uri)
    with tempfile.TemporaryDirectory() as download:
        record = _resolve(registry, model_name, mlflow_tracking_uri, output_uri, download)
    with tf.io.gfile.GFile(os.path.join(output_uri, BASELINE_FILE), "w") as f:
        json.dump(record, f, indent=2)
    return record


def _resolve(registry, model_name, mlflow_tracking_uri, output_uri, download_dir) -> dict:
    path, found = published(registry, model_name, mlflow_tracking_uri, download_dir)
    if path is None:
        return {"found": False, "reason": found}
    # The data it was trained on (statistics, schema), for the data gate's drift check, whatever
    # its model contract.
    monitoring = os.path.join(path, MONITORING_DIR)
    if tf.io.gfile.isdir(monitoring):
        copy_tree(monitoring, os.path.join(output_uri, MONITORING_DIR))
        found = dict(found, monitoring=True, span=_card(path).get("data", {}).get("span"))
    if (contract := saved_model_contract(path)) != MODEL_CONTRACT:
        record = dict(
            found,
            found=False,
            reason=f"the published model ({found['source']}) has model contract {contract}, "
            f"this code {MODEL_CONTRACT}: compared with nothing (gated by values only)",
        )
    else:
        copy_tree(path, os.path.join(output_uri, SERVING_DIR))
        record = dict(
            found, found=True, saved_model=to_remote(os.path.join(output_uri, SERVING_DIR))
        )
    return record


def _card(version_dir: str) -> dict:
    path = os.path.join(version_dir, "model_card.json")
    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def baseline_record(model_uri: str) -> dict | None:
    """What a baseline artifact holds (None: not a PublishedBaseline artifact)."""
    path = os.path.join(model_uri, BASELINE_FILE)
    if not model_uri or not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


@component
def PublishedBaseline(  # noqa: N802 - a TFX component is named like a class
    baseline: OutputArtifact[standard_artifacts.Model],
    model_name: Parameter[str],
    registry: Parameter[str] = "",
    mlflow_tracking_uri: Parameter[str] = "",
    run: Parameter[str] = "",
) -> None:
    del run  # only keeps the step out of the cache
    record = resolve_baseline(registry, model_name, mlflow_tracking_uri, baseline.uri)
    if not record["found"]:
        print(f"[PublishedBaseline] no baseline: {record['reason']}")
    else:
        print(
            f"[PublishedBaseline] baseline: {model_name} version {record['version']} "
            f"({record['source']})"
        )


class EvaluatorExecutor(tfx_evaluator_executor.Executor):
    """TFX's Evaluator executor, given the baseline only when PublishedBaseline found a model."""

    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 - TFX's name
        key = standard_component_specs.BASELINE_MODEL_KEY
        kept = []
        for model in input_dict.get(key) or []:
            record = baseline_record(model.uri)
            if record is not None and not record["found"]:
                print(f"[Evaluator] no baseline: {record['reason']}")
                continue
            kept.append(model)
        input_dict = {k: v for k, v in input_dict.items() if k != key}
        if kept:
            input_dict[key] = kept
        super().Do(input_dict, output_dict, exec_properties)
        version = (baseline_record(kept[0].uri) or {}).get("version") if kept else None
        blessings = output_dict.get(standard_component_specs.BLESSING_KEY) or []
        if isinstance(version, int) and blessings:  # for steps that cannot read the baseline
            blessings[0].set_int_custom_property(constants.BASELINE_VERSION, version)


class Evaluator(tfx_evaluator.Evaluator):
    """TFX's Evaluator, compared with what PublishedBaseline found (or with nothing)."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(EvaluatorExecutor)

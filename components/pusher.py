"""RegistryPusher: publishes a blessed model to the registry, with its model card, and to MLflow.

TFX's own Pusher names versions by timestamp and copies in place; this component publishes with
integer versions and an atomic rename (components/registry.py), writes `model_card.json` (spec
and code fingerprints, the data it was trained on, every head's metrics overall and per slice,
the gates and their results, the baseline it was compared with) and the run's `report.html`
beside it, and, when an MLflow tracking URI is given, registers the model there as a new version
and moves an alias to it. The pipeline runs it only when the Evaluator blessed the model
(`Cond`); it checks the blessing again itself.
"""

import json
import os
import tempfile
import time

import tensorflow as tf
from tfx.dsl.component.experimental.annotations import (
    InputArtifact,
    OutputArtifact,
    Parameter,
)
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from components.batching import BATCHING_FILE, write_batching_file
from components.contract import SERVING_DIR
from components.registry import copy_tree, open_registry
from components.report import RunReportArtifact, rival_uris
from pipeline import constants
from pipeline.evaluation.summary import EvaluationSummary
from pipeline.monitoring.drift import published_files
from pipeline.mounts import to_remote
from pipeline.version import code_fingerprint


def push_to_mlflow(
    tracking_uri: str, name: str, saved_model_dir: str, card: dict, alias: str = "champion"
) -> str:
    """Logs the model as an MLflow pyfunc model (components/mlflow_model.py: servable by `mlflow
    models serve`, its signature from the card's spec, its input example the first eval rows of
    the examples it was trained on) with its overall per-head metrics and its model card in a
    run, registers it, moves `alias`."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from components.mlflow_model import eval_input_example, log_pyfunc_model

    example = None
    examples_uri = card.get("data", {}).get("examples_uri")
    if examples_uri:
        try:
            example = eval_input_example(examples_uri, card["spec"])
        except Exception as e:  # an example is a nicety, never worth a failed push
            print(f"[RegistryPusher] no MLflow input example from {examples_uri}: {e}")

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(name)
    with mlflow.start_run(run_name=f"{name}-v{card['version']}") as run:
        for head, slices in card["evaluation"]["metrics"].items():
            for metric, value in slices.get("overall", {}).items():
                if ":" not in metric:
                    mlflow.log_metric(f"{head}.{metric.replace('/', '.')}", value)
        mlflow.log_params(
            {
                "registry_version": card["version"],
                "spec_fingerprint": card["spec_fingerprint"],
                "code_fingerprint": card["code_fingerprint"],
                # the span (TFX's {SPAN} or a date) it was trained on; 0 without spans
                "span": card.get("data", {}).get("span"),
                **{f"tuned.{k}": v for k, v in card.get("hyperparameters", {}).items()},
            }
        )
        log_pyfunc_model(saved_model_dir, card["spec"], input_example=example)
        mlflow.log_dict(card, "model_card.json")
        page = os.path.join(saved_model_dir, constants.REPORT_FILE)
        if os.path.exists(page):  # the run's report, shown by MLflow's UI as the run's artifact
            mlflow.log_artifact(page)
    version = mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
    MlflowClient().set_registered_model_alias(name, alias, version.version)
    return str(version.version)


def _written_at(saved_model_dir: str) -> float:
    """When the export was written (seconds since the epoch), on any filesystem TF reaches."""
    return tf.io.gfile.stat(os.path.join(saved_model_dir, "saved_model.pb")).mtime_nsec / 1e9


def _record(pushed_model, version: int, destination: str, already: bool = False) -> None:
    pushed_model.set_int_custom_property(constants.PUSHED, 0 if already else 1)
    pushed_model.set_int_custom_property(constants.PUSHED_VERSION, version)
    pushed_model.set_string_custom_property(constants.PUSHED_DESTINATION, destination)
    tf.io.gfile.makedirs(pushed_model.uri)  # a local path or an object store's URL
    with tf.io.gfile.GFile(os.path.join(pushed_model.uri, constants.PUSHED_FILE), "w") as f:
        json.dump({"version": version, "destination": destination, "already_published": already}, f)


@component
def RegistryPusher(  # noqa: N802 - a TFX component is named like a class
    model: InputArtifact[standard_artifacts.Model],
    model_blessing: InputArtifact[standard_artifacts.ModelBlessing],
    evaluation: InputArtifact[standard_artifacts.ModelEvaluation],
    examples: InputArtifact[standard_artifacts.Examples],
    report: InputArtifact[RunReportArtifact],
    pushed_model: OutputArtifact[standard_artifacts.PushedModel],
    registry: Parameter[str],
    spec: Parameter[str],
    mlflow_tracking_uri: Parameter[str] = "",
    rival_evaluation: InputArtifact[standard_artifacts.ModelEvaluation] = None,
    rival_blessing: InputArtifact[standard_artifacts.ModelBlessing] = None,
    statistics: InputArtifact[standard_artifacts.ExampleStatistics] = None,
    schema: InputArtifact[standard_artifacts.Schema] = None,
) -> None:
    from pipeline.spec import Spec

    parsed = Spec.from_dict(json.loads(spec))
    # The pipeline runs this step only when both are blessed; a run of the step alone checks.
    for blessing, what in ((model_blessing, "model"), (rival_blessing, "`beats` gates")):
        if blessing is not None and blessing.get_int_custom_property(constants.BLESSED) != 1:
            pushed_model.set_int_custom_property(constants.PUSHED, 0)
            print(f"[RegistryPusher] {what}: not blessed, nothing published")
            return
    reg = open_registry(registry)
    for d in reg.damaged(parsed.name):  # never compared with, never counted as published
        print(
            f"[RegistryPusher] warning: {d.path}: {d.reason}; ignored, not a version "
            f"(`mimo models gc {parsed.name}` moves it aside)"
        )
    for v in reg.versions(parsed.name):  # a cached re-run must not publish the model twice
        if reg.card(parsed.name, v).get("model_uri") == to_remote(model.uri):
            _record(pushed_model, v, reg.path(parsed.name, v), already=True)
            print(f"[RegistryPusher] this model is already {parsed.name} version {v}")
            return
    # The Evaluator records the baseline it was given (PublishedBaseline's copy of a version)
    # and that version: this step may not see the baseline artifact (a Kubeflow pod).
    baseline_uri = model_blessing.get_string_custom_property(constants.BASELINE_MODEL)
    baseline_version = None
    if model_blessing.has_custom_property(constants.BASELINE_VERSION):
        baseline_version = model_blessing.get_int_custom_property(constants.BASELINE_VERSION)
    serving = os.path.join(model.uri, SERVING_DIR)
    card = {
        "spec_fingerprint": parsed.fingerprint(),
        "code_fingerprint": code_fingerprint(),
        "spec": parsed.to_dict(),
        "model_uri": to_remote(model.uri),
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(_written_at(serving))),
        "data": {
            "examples_uri": to_remote(examples.uri),
            "span": examples.get_int_custom_property(constants.SPAN),
            "version": examples.get_int_custom_property(constants.VERSION),
            "input_fingerprint": examples.get_string_custom_property(constants.INPUT_FINGERPRINT),
        },
        "baseline": {"model_uri": baseline_uri or None, "version": baseline_version},
        "gates": [
            {
                "head": o.name,
                "metric": g.metric,
                "min": g.min,
                "max": g.max,
                "max_regression": g.max_regression,
                "beats": g.beats,
            }
            for o in parsed.outputs
            for g in o.gates
        ],
        "evaluation": EvaluationSummary.from_tfma(
            evaluation.uri, rival_uris(rival_evaluation)
        ).to_dict(),
    }
    tuned = os.path.join(serving, constants.HYPERPARAMETERS_FILE)
    if tf.io.gfile.exists(tuned):  # the Tuner's values, which the Trainer used over the spec's
        with tf.io.gfile.GFile(tuned) as f:
            card["hyperparameters"] = json.load(f)
    # The run's report.html goes into the version beside the card (components/report.py).
    page = os.path.join(report.uri, constants.REPORT_FILE)
    extras = {constants.REPORT_FILE: page} if tf.io.gfile.exists(page) else {}
    # TF Serving's batching file beside the SavedModel (components/batching.py).
    extras[BATCHING_FILE] = write_batching_file(pushed_model.uri)
    # The training data's statistics and schema: drift and skew are measured against them
    # (pipeline/monitoring/drift.py).
    if statistics is not None and schema is not None:
        extras.update(published_files(statistics.uri, schema.uri))
    version = reg.publish(parsed.name, serving, card, extras=extras)
    destination = reg.path(parsed.name, version)
    _record(pushed_model, version, destination)
    print(f"[RegistryPusher] published {parsed.name} version {version}: {destination}")
    if mlflow_tracking_uri:
        with tempfile.TemporaryDirectory() as tmp:
            local = destination  # MLflow logs files from a local folder
            if "://" in destination:
                local = os.path.join(tmp, "model")
                copy_tree(destination, local)
            mlflow_version = push_to_mlflow(
                mlflow_tracking_uri, parsed.name, local, reg.card(parsed.name, version)
            )
        pushed_model.set_string_custom_property(constants.MLFLOW_VERSION, mlflow_version)
        print(
            f"[RegistryPusher] registered in MLflow ({mlflow_tracking_uri}) as "
            f"{parsed.name} version {mlflow_version}, alias 'champion'"
        )

"""RunReport: the run's report.html (pipeline/evaluation/html_report.py), as a step of the
pipeline, so that every orchestrator's run has one (local, notebook, Airflow, Kubeflow).

It runs after the Evaluator whatever the verdict (a model that fails a gate is exactly the one a
user wants to look at) and reads only artifacts: the statistics, schema and anomalies (rows per
split, missing values, the data gate's warnings, its drift against the published model's
data), the Trainer's training report, the Evaluator's
metrics, plots and blessing. Its output is a folder holding `report.html`; the RegistryPusher
copies it into the published version beside `model_card.json`.
"""

import json
import os

import tensorflow as tf
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact, standard_artifacts

from components.data_gate import check_data, published_drift, read_data_artifacts
from pipeline import constants
from pipeline.evaluation.html_report import RunFacts, render
from pipeline.evaluation.summary import EvaluationSummary, rivals
from pipeline.spec import Spec


class RunReportArtifact(artifact.Artifact):
    """A folder with the run's report.html."""

    # On Kubeflow a custom type's class is imported from its type name (the schema title), which
    # the KFP compiler allows only as `<package>.<Class>`: components/__init__.py answers it.
    TYPE_NAME = "components.RunReport"


def missing_fractions(stats) -> dict:
    """{column: fraction of examples without a value} for the columns that miss any."""
    out = {}
    for feature in stats.features:
        common = None
        for kind in ("num_stats", "string_stats", "bytes_stats", "struct_stats"):
            if feature.HasField(kind):
                common = getattr(feature, kind).common_stats
        if common is None or not stats.num_examples:
            continue
        if common.num_missing:
            name = feature.path.step[0] if feature.path.step else feature.name
            out[name] = common.num_missing / stats.num_examples
    return out


def overall_plots(evaluation_uri: str) -> dict:
    """{head: {PlotData field name: its message}} of the overall slice (TFMA's plots)."""
    import tensorflow_model_analysis as tfma

    out: dict = {}
    for plots in tfma.load_plots(evaluation_uri):
        if plots.slice_key.single_slice_keys:
            continue
        for kv in plots.plot_keys_and_values:
            if kv.key.model_name == "baseline" or kv.key.HasField("sub_key"):
                continue
            head = out.setdefault(kv.key.output_name or "_", {})
            for name in (
                "confusion_matrix_at_thresholds",
                "calibration_histogram_buckets",
                "multi_class_confusion_matrix_at_thresholds",
            ):
                if kv.value.HasField(name):
                    head[name] = getattr(kv.value, name)
    return out


def _training_report(model_run) -> dict | None:
    if model_run is None:
        return None
    path = os.path.join(model_run.uri, constants.TRAINING_REPORT_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def rival_uris(rival_evaluation) -> dict:
    """summary.rivals of an optional rival ModelEvaluation artifact."""
    return rivals(rival_evaluation.uri if rival_evaluation is not None else None)


def run_facts(
    spec: Spec,
    statistics,
    schema,
    anomalies,
    model_run,
    evaluation,
    blessing,
    run,
    rival_evaluation=None,
    rival_model_run=None,
    examples=None,
    baseline=None,
):
    """RunFacts from the artifacts (any of them may be None)."""
    facts = RunFacts(spec=spec, run=run)
    if statistics is not None and schema is not None and anomalies is not None:
        schema_proto, stats, found = read_data_artifacts(statistics, schema, anomalies)
        if examples is not None and baseline is not None:
            measured = published_drift(spec, examples, baseline, schema_proto, stats)
            if measured is not None:
                facts.drift, facts.drift_title = measured[0], measured[1].rstrip(":")
        facts.rows = {split: s.num_examples for split, s in stats.items()}
        facts.missing = {split: missing_fractions(s) for split, s in stats.items()}
        _, facts.warnings = check_data(spec, schema_proto, stats, found)
        facts.anomalies = {
            split: [(name, info.description) for name, info in a.anomaly_info.items()]
            for split, a in found.items()
            if a.anomaly_info
        }
    facts.training = _training_report(model_run)
    facts.rival_training = _training_report(rival_model_run)
    if evaluation is not None:
        facts.summary = EvaluationSummary.from_tfma(evaluation.uri, rival_uris(rival_evaluation))
        try:
            facts.plot_data = overall_plots(evaluation.uri)
        except Exception as e:  # noqa: BLE001 - a page without TFMA's plots is still a report
            print(f"[RunReport] warning: TFMA's plots could not be read ({e!r}); drawn without")
    if blessing is not None:
        facts.blessed = blessing.get_int_custom_property(constants.BLESSED) == 1
        if blessing.has_custom_property(constants.BASELINE_VERSION):
            facts.baseline_version = blessing.get_int_custom_property(constants.BASELINE_VERSION)
    return facts


@component
def RunReport(  # noqa: N802 - a TFX component is named like a class
    statistics: InputArtifact[standard_artifacts.ExampleStatistics],
    schema: InputArtifact[standard_artifacts.Schema],
    anomalies: InputArtifact[standard_artifacts.ExampleAnomalies],
    model_run: InputArtifact[standard_artifacts.ModelRun],
    evaluation: InputArtifact[standard_artifacts.ModelEvaluation],
    blessing: InputArtifact[standard_artifacts.ModelBlessing],
    report: OutputArtifact[RunReportArtifact],
    spec: Parameter[str],
    run: Parameter[str] = "",
    rival_evaluation: InputArtifact[standard_artifacts.ModelEvaluation] = None,
    rival_model_run: InputArtifact[standard_artifacts.ModelRun] = None,
    examples: InputArtifact[standard_artifacts.Examples] = None,
    baseline: InputArtifact[standard_artifacts.Model] = None,
) -> None:
    """Writes `<report>/report.html`."""
    parsed = Spec.from_dict(json.loads(spec))
    facts = run_facts(
        parsed,
        statistics,
        schema,
        anomalies,
        model_run,
        evaluation,
        blessing,
        run,
        rival_evaluation,
        rival_model_run,
        examples,
        baseline,
    )
    page = render(facts)
    tf.io.gfile.makedirs(report.uri)
    path = os.path.join(report.uri, constants.REPORT_FILE)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(page)
    print(f"[RunReport] {path} ({len(page) // 1024} kB)")

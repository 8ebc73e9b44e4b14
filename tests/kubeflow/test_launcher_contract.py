"""The compiled Kubeflow package, run task by task as the open-source KFP v2 backend runs it
(tests/kubeflow/kfp_launcher.py: ExecutorInput as its driver builds it, each task's own
container command, artifacts through an object store), twice on the movies fixture."""

import os

import pytest
from conftest import MOVIES_FIXTURE_CSV, MOVIES_FIXTURE_SPEC, REPO
from kfp_launcher import Launcher, LauncherError, evaluate_condition

from components.baseline import baseline_record
from components.registry import Registry
from kubeflow.runner import Resources, compile_kubeflow, kubeflow_pipeline
from pipeline.spec import load_spec

VENV_PYTHON = os.path.join(REPO, ".venv", "bin", "python")


def test_condition_forms_and_missing_inputs_are_errors_as_in_the_driver():
    executor_input = {
        "inputs": {"artifacts": {"b": {"artifacts": [{"metadata": {"blessed": 1.0}}]}}}
    }
    assert evaluate_condition(
        "(inputs.artifacts['b'].artifacts[0].metadata['blessed'] == 1.0)", executor_input
    )
    assert not evaluate_condition(
        "inputs.artifacts['b'].artifacts[0].metadata['blessed'] == 0", executor_input
    )
    with pytest.raises(LauncherError, match="no such key"):
        evaluate_condition(
            "(inputs.artifacts['_Evaluator.blessing'].artifacts[0].metadata['blessed'] == 1.0)",
            executor_input,
        )


@pytest.mark.e2e
def test_two_kfp_runs_push_version_1_then_version_2_compared_with_it(tmp_path):
    spec = load_spec(MOVIES_FIXTURE_SPEC)
    registry = str(tmp_path / "registry")
    package = str(tmp_path / "pipeline.yaml")
    pipeline = kubeflow_pipeline(
        spec,
        [],  # Beam's DirectRunner inside each step's pod
        Resources(trainer_accelerator=""),
        data_root=os.path.dirname(MOVIES_FIXTURE_CSV),
        registry=registry,
        train_steps=20,
    )
    compile_kubeflow(pipeline, package, image="registry.example.com/mimo:test")
    launcher = Launcher(package, str(tmp_path / "kfp"), python=VENV_PYTHON)

    first = launcher.run("run-1")
    assert {r.state for r in first.values()} == {"SUCCEEDED"}, {
        n: r.state for n, r in first.items()
    }
    reg = Registry(registry)
    assert reg.versions(spec.name) == [1]
    baseline_1 = baseline_record(
        launcher.store_path(first["PublishedBaseline"].outputs["baseline"]["uri"])
    )
    assert baseline_1["found"] is False  # nothing published yet
    assert reg.card(spec.name, 1)["baseline"]["version"] is None
    # The examples' span and input fingerprint: TFX's ExampleGen driver ran in the entrypoint.
    examples = first["CsvExampleGen"].outputs["examples"]["metadata"]
    assert examples["input_fingerprint"].startswith("split:single_split,num_files:1")
    assert first["Evaluator"].outputs["blessing"]["metadata"]["blessed"] == 1

    second = launcher.run("run-2")
    assert {r.state for r in second.values()} == {"SUCCEEDED"}
    assert reg.versions(spec.name) == [1, 2]
    card = reg.card(spec.name, 2)
    assert card["baseline"]["version"] == 1  # compared with what was published
    assert card["model_uri"] == second["Trainer"].outputs["model"]["uri"]
    # What the steps record about other artifacts names their URIs, not a pod's local paths.
    assert card["data"]["examples_uri"] == second["CsvExampleGen"].outputs["examples"]["uri"]
    assert card["data"]["input_fingerprint"] == examples["input_fingerprint"]
    blessing = second["Evaluator"].outputs["blessing"]["metadata"]
    assert blessing["baseline_version"] == 1
    assert blessing["baseline_model"] == second["PublishedBaseline"].outputs["baseline"]["uri"]

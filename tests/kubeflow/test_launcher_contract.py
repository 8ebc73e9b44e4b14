"""The compiled Kubeflow package, run task by task as the open-source KFP v2 backend runs it
(tests/kubeflow/kfp_launcher.py: ExecutorInput as its driver builds it, each task's own
container command, artifacts through an object store), on users' messy movies file after the
shared local run (conftest.movies_run) published a model."""

import dataclasses
import os
import shutil

import pytest
from conftest import REPO
from kfp_launcher import Launcher, LauncherError, evaluate_condition

from components.baseline import baseline_record
from components.registry import Registry
from kubeflow.runner import Resources, compile_kubeflow, kubeflow_pipeline

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
def test_a_kfp_run_of_users_messy_data_publishes_the_next_version_compared_with_the_published(
    movies_run, tmp_path
):
    """One run of the compiled package on the shared run's data (users' messy movies file) and a
    copy of its registry: the published model (version 2, pushed by the local run) is the
    baseline, the run pushes version 3. (A first run with nothing published, where the Evaluator
    gates by values only, is the local run's own: same create_pipeline, same steps.)"""
    spec, paths, local = movies_run
    # Without the boosted rival, which the local run covers (its steps are a Trainer and an
    # Evaluator as here; the pusher's condition on both blessings: tests/kubeflow/test_kubeflow.py).
    spec = dataclasses.replace(
        spec,
        evaluation={"baselines": []},
        outputs=tuple(
            dataclasses.replace(o, gates=tuple(g for g in o.gates if not g.beats))
            for o in spec.outputs
        ),
    )
    registry = str(tmp_path / "registry")
    shutil.copytree(os.path.join(os.path.dirname(spec.source), "registry"), registry)
    reg = Registry(registry)
    published = reg.versions(spec.name)
    assert published == [2]
    package = str(tmp_path / "pipeline.yaml")
    pipeline = kubeflow_pipeline(
        spec,
        [],  # Beam's DirectRunner inside each step's pod
        Resources(trainer_accelerator=""),
        data_root=spec.data.root,
        registry=registry,
        train_steps=20,
    )
    compile_kubeflow(pipeline, package, image="registry.example.com/mimo:test")
    launcher = Launcher(package, str(tmp_path / "kfp"), python=VENV_PYTHON)

    run = launcher.run("run-1")
    assert {r.state for r in run.values()} == {"SUCCEEDED"}, {n: r.state for n, r in run.items()}
    baseline = baseline_record(
        launcher.store_path(run["PublishedBaseline"].outputs["baseline"]["uri"])
    )
    assert baseline["found"] is True and baseline["version"] == 2
    assert reg.versions(spec.name) == [2, 3]
    card = reg.card(spec.name, 3)
    assert card["baseline"]["version"] == 2  # compared with what was published
    assert card["model_uri"] == run["Trainer"].outputs["model"]["uri"]
    # The examples' span and input fingerprint: TFX's ExampleGen driver ran in the entrypoint,
    # on the same file as the local run.
    examples = run["CsvExampleGen"].outputs["examples"]["metadata"]
    assert examples["input_fingerprint"].startswith("split:single_split,num_files:1")
    fingerprint = local["CsvExampleGen"]["examples"][0].custom_properties["input_fingerprint"]
    assert examples["input_fingerprint"] == fingerprint.string_value
    # What the steps record about other artifacts names their URIs, not a pod's local paths.
    assert card["data"]["examples_uri"] == run["CsvExampleGen"].outputs["examples"]["uri"]
    assert card["data"]["input_fingerprint"] == examples["input_fingerprint"]
    blessing = run["Evaluator"].outputs["blessing"]["metadata"]
    assert blessing["blessed"] == 1
    assert blessing["baseline_version"] == 2
    assert blessing["baseline_model"] == run["PublishedBaseline"].outputs["baseline"]["uri"]
    # The Evaluator compared every head with the published model: its baseline metrics are there.
    for head in spec.outputs:
        overall = card["evaluation"]["metrics"][head.name]["overall"]
        assert any(key.startswith("baseline:") for key in overall), (head.name, overall)

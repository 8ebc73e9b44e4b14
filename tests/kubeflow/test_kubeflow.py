"""Kubeflow: the compiled pipeline, loaded back with the real kfp SDK; the image's Dockerfile
against the constraints file; Beam arguments per runner; the schedule's cron check."""

import json
import os
import re

import pytest
from conftest import REPO
from google.protobuf import json_format
from kfp import components as kfp_components

from kubeflow import IMAGE_PROJECT_DIR
from kubeflow.runner import Resources, compile_kubeflow, kubeflow_pipeline
from kubeflow.schedule import ScheduleError, check_cron, parse_params
from pipeline.pipeline import create_pipeline
from pipeline.runners.beam import BeamArgsError, BeamOptions, beam_args
from pipeline.spec import Spec, load_spec

MOVIES_SPEC = os.path.join(REPO, "data", "movies", "movies.yaml")
IMAGE = "registry.example.com/ml/mimo-pipeline:1.2.3"
DATAFLOW = BeamOptions(
    runner="dataflow",
    project="proj",
    region="europe-west4",
    temp_location="gs://b/tmp",
    image=IMAGE,
)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    spec = load_spec(MOVIES_SPEC)
    path = str(tmp_path_factory.mktemp("kfp") / "pipeline.yaml")
    pipeline = kubeflow_pipeline(
        spec,
        beam_args(DATAFLOW),
        Resources(trainer_accelerator="NVIDIA_L4", trainer_accelerator_count=2),
        registry="/mnt/models",
        train_steps=500,
    )
    compile_kubeflow(pipeline, path, image=IMAGE)
    component = kfp_components.load_component_from_file(path)  # the real kfp SDK parses it
    as_dict = json_format.MessageToDict(component.pipeline_spec)
    return spec, component, as_dict


def test_kfp_loads_every_component_with_the_local_pipelines_dependencies(compiled, tmp_path):
    spec, component, ir = compiled
    assert component.name == spec.name
    assert ir["schemaVersion"] == "2.1.0"
    tasks = ir["root"]["dag"]["tasks"]
    local = create_pipeline(spec, str(tmp_path), registry=str(tmp_path / "registry"))
    # Every component is one task with the same upstream components as in the local pipeline;
    # the baseline is a container step like any other (open-source KFP runs no `resolver`).
    assert {node.id for node in local.components} == set(tasks)
    for node in local.components:
        assert set(tasks[node.id].get("dependentTasks", [])) == {u.id for u in node.upstream_nodes}
    executors = ir["deploymentSpec"]["executors"]
    assert all(set(e) <= {"container", "importer"} for e in executors.values()), executors.keys()
    assert tasks["Evaluator"]["inputs"]["artifacts"]["baseline_model"] == {
        "taskOutputArtifact": {"producerTask": "PublishedBaseline", "outputArtifactKey": "baseline"}
    }
    # Pushed only when the Evaluator blessed the model, a condition on the pusher's own input
    # (TFX names an input the task does not have; compile_kubeflow renames it).
    condition = tasks["RegistryPusher"]["triggerPolicy"]["condition"]
    assert (
        condition == "(inputs.artifacts['model_blessing'].artifacts[0].metadata['blessed'] == 1.0)"
    )
    # What is published changes between runs with the same inputs: never from KFP's cache.
    assert "cachingOptions" not in tasks["PublishedBaseline"]


def test_trainer_asks_for_gpus_and_every_step_for_cpu_and_memory(compiled):
    _, _, ir = compiled
    executors = ir["deploymentSpec"]["executors"]
    trainer = executors["Trainer_executor"]["container"]["resources"]
    assert trainer["accelerator"] == {"type": "NVIDIA_L4", "count": "2"}
    assert trainer["cpuRequest"] == 8 and trainer["memoryLimit"] == 32
    pods = [e["container"] for e in executors.values() if "container" in e]
    assert len(pods) == 13  # every component, the boosted rival's Trainer and Evaluator too
    for container in pods:
        assert container["image"] == IMAGE
        assert container["resources"]["cpuRequest"] >= 1
        assert container["resources"]["memoryRequest"] >= 4
    for step in ("Transform", "BoostedTrainer", "BoostedEvaluator"):
        resources = executors[f"{step}_executor"]["container"]["resources"]
        assert resources["cpuRequest"] == 4 and resources["memoryRequest"] == 16, step


def test_beam_steps_run_on_the_distributed_runner(compiled):
    _, _, ir = compiled
    executors = ir["deploymentSpec"]["executors"]
    for name in ("CsvExampleGen", "StatisticsGen", "Transform", "Evaluator", "BoostedEvaluator"):
        args = executors[f"{name}_executor"]["container"]["args"]
        assert "--runner=DataflowRunner" in args, name
        assert f"--sdk_container_image={IMAGE}" in args, name


def test_runtime_parameters_have_defaults_inside_the_image(compiled):
    _, component, ir = compiled
    inputs = component.component_spec.inputs
    assert inputs["data_root"].default == f"{IMAGE_PROJECT_DIR}/data/movies"
    assert json.loads(inputs["train_args"].default) == {"num_steps": 500}
    tasks = ir["root"]["dag"]["tasks"]
    example_gen = tasks["CsvExampleGen"]
    assert example_gen["inputs"]["parameters"]["input_base"] == {
        "componentInputParameter": "data_root"
    }
    trainer = tasks["Trainer"]["inputs"]["parameters"]
    assert trainer["train_args"] == {"componentInputParameter": "train_args"}
    # New files under the same data_root must be read: ExampleGen is never served from cache,
    # the steps after it are when their inputs are unchanged.
    assert "cachingOptions" not in example_gen
    assert tasks["Transform"]["cachingOptions"]["enableCache"] is True


def test_compile_command_writes_a_loadable_package(tmp_path):
    from pipeline.cli import main

    out = tmp_path / "p.yaml"
    argv = ["compile", "kubeflow", "--spec", MOVIES_SPEC, "--output", str(out)]
    argv += ["--registry", "/mnt/models", "--trainer-accelerator", "", "--image", IMAGE]
    assert main(argv + ["--beam-runner", "portable"]) == 2  # no job endpoint: refused
    assert not out.exists()
    argv += ["--beam-runner", "portable", "--job-endpoint", "flink-jobserver:8099"]
    assert main(argv) == 0
    ir = json_format.MessageToDict(kfp_components.load_component_from_file(str(out)).pipeline_spec)
    trainer = ir["deploymentSpec"]["executors"]["Trainer_executor"]["container"]
    assert "accelerator" not in trainer["resources"]  # a CPU-only Trainer when asked
    args = ir["deploymentSpec"]["executors"]["Transform_executor"]["container"]["args"]
    assert "--job_endpoint=flink-jobserver:8099" in args
    assert f"--environment_config={IMAGE}" in args  # DOCKER workers from the pipeline image


def _pins():
    pins = {}
    with open(os.path.join(REPO, "constraints.txt")) as f:
        for line in f:
            name, sep, version = line.strip().partition("==")
            if sep and not name.startswith("#"):
                pins[name.lower()] = version
    return pins


def test_dockerfile_agrees_with_the_constraints_and_the_compiled_commands(compiled):
    _, _, ir = compiled
    with open(os.path.join(REPO, "kubeflow", "Dockerfile")) as f:
        text = f.read()
    pins = _pins()
    base = re.search(r"^FROM tensorflow/tensorflow:(\S+)-gpu$", text, re.M)
    assert base and base.group(1) == pins["tensorflow"]
    beam = re.search(r"COPY --from=apache/beam_python(\d+\.\d+)_sdk:(\S+) ", text)
    assert beam and beam.group(2) == pins["apache-beam"]
    with open(os.path.join(REPO, "setup.py")) as f:
        setup = f.read()
    python = re.search(r'python_requires=">=(\d+\.\d+),', setup).group(1)
    assert beam.group(1) == python and f"python{python} -m venv" in text
    installs = re.findall(r"pip install [^\n]*", text)
    project_installs = [i for i in installs if "'.[" in i]
    assert len(project_installs) == 2
    assert all("-c constraints.txt" in i and "kubeflow" in i for i in project_installs)
    assert "COPY constraints.txt" in text
    assert re.search(r"^ENV TF_USE_LEGACY_KERAS=1$", text, re.M)
    assert re.search(rf"^WORKDIR {IMAGE_PROJECT_DIR}$", text, re.M)
    # Every package setup.py installs and the bundled data are copied in.
    for package in ("pipeline", "components", "preprocessing", "trainer", "kubeflow", "data"):
        assert re.search(rf"^COPY {package} \./{package}$", text, re.M), package
    # The compiled steps run `python -m ...`: the virtualenv's python must come first on PATH.
    venv = re.search(r"^ENV VIRTUAL_ENV=(\S+)$", text, re.M).group(1)
    assert re.search(rf"^ENV PATH={venv}/bin:\$PATH$", text, re.M)
    commands = {
        tuple(e["container"]["command"])
        for e in ir["deploymentSpec"]["executors"].values()
        if "container" in e
    }
    assert commands == {("python", "-m", "kubeflow.entrypoint")}


@pytest.mark.parametrize(
    "options, error",
    [
        (BeamOptions(runner="portable"), "--job-endpoint"),
        (BeamOptions(runner="portable", job_endpoint="h:1"), "--environment-config"),
        (BeamOptions(runner="dataflow", project="p"), "--region, --temp-location"),
        (BeamOptions(runner="dataflow", project="p", region="r", temp_location="/tmp"), "gs://"),
        (BeamOptions(runner="spark"), "unknown Beam runner"),
    ],
)
def test_beam_options_missing_what_a_runner_needs_are_refused(options, error):
    with pytest.raises(BeamArgsError, match=re.escape(error)):
        beam_args(options)


def test_beam_args_per_runner():
    assert beam_args(BeamOptions()) == []  # Beam's defaults: TFX then stages nothing
    assert beam_args(BeamOptions(direct_mode="multi_processing", workers=2)) == [
        "--direct_running_mode=multi_processing",
        "--direct_num_workers=2",
    ]
    loopback = beam_args(
        BeamOptions(runner="portable", job_endpoint="localhost:8099", environment_type="LOOPBACK")
    )
    assert loopback == [
        "--runner=PortableRunner",
        "--job_endpoint=localhost:8099",
        "--environment_type=LOOPBACK",
    ]
    dataflow = beam_args(DATAFLOW)
    assert "--sdk_location=container" in dataflow and "--experiments=use_runner_v2" in dataflow


def test_cron_expressions_for_kfp():
    assert check_cron("0 3 * * *") == "0 0 3 * * *"  # 5 fields: seconds prepended
    assert check_cron("0 30 2 * * MON-FRI") == "0 30 2 * * MON-FRI"
    for bad in ("daily", "0 3 * *", "0 0 3 * * * *", "0 0 3 * * ;rm"):
        with pytest.raises(ScheduleError, match="6 fields"):
            check_cron(bad)
    assert parse_params(["data_root=gs://b/movies", "train_args={}"]) == {
        "data_root": "gs://b/movies",
        "train_args": "{}",
    }
    with pytest.raises(ScheduleError, match="NAME=VALUE"):
        parse_params(["data_root"])


def test_compiled_package_carries_no_path_of_this_machine(compiled):
    _, _, ir = compiled
    assert REPO not in json.dumps(ir)
    assert f"{IMAGE_PROJECT_DIR}/data/movies/movies.csv" in json.dumps(ir)  # the spec, in-image


def test_compile_creates_missing_folders_and_answers_bad_flags_in_one_line(tmp_path, capsys):
    from pipeline.cli import main

    base = ["compile", "kubeflow", "--spec", MOVIES_SPEC, "--beam-runner", "direct"]
    out = tmp_path / "new" / "dir" / "pipeline.yaml"
    assert main(base + ["--output", str(out), "--registry", "/mnt/models"]) == 0
    assert out.is_file()
    capsys.readouterr()
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    bad = [
        (["--output", str(tmp_path), "--registry", "/m"], "a folder; name the package file"),
        (["--output", str(tmp_path / "p.txt"), "--registry", "/m"], "is a .yaml"),
        (["--output", str(blocked / "p.yaml"), "--registry", "/m"], "cannot write"),
        (["--output", str(out), "--registry", "models"], "--registry models: a relative path"),
        (["--output", str(out), "--registry", "/m", "--data-root", "d"], "--data-root d: a rel"),
        (["--output", str(out), "--registry", "/m", "--train-steps", "-1"], "--train-steps -1"),
        (["--output", str(out), "--registry", "/m", "--beam-memory", "0"], "--beam-memory 0"),
    ]
    for flags, message in bad:
        assert main(base + flags) == 2, flags
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err, (flags, err)


def test_the_entrypoint_gives_untyped_inputs_their_declared_types_and_local_mounts(monkeypatch):
    from kubeflow.entrypoint import adjust, to_local, to_remote

    examples = {"instanceSchema": "title: tfx.Examples\ntype: object\n"}
    spec = {"artifacts": {k: {"artifactType": examples} for k in ("a", "b", "c", "d")}}

    def artifact(kind, **extra):
        return {"artifacts": [dict({"uri": f"minio://mlpipeline/v2/x/{kind}"}, **extra)]}

    executor_input = {
        "inputs": {
            "artifacts": {
                "a": artifact("a", name="17", type={"instanceSchema": ""}),  # KFP 2.0-2.3
                "b": artifact("b", name="18", type={"schemaTitle": "system.Artifact"}),
                "c": artifact("c"),  # a pipeline-level input: no type, no name
                "d": artifact("d", name="19", type={"schemaTitle": "tfx.Examples"}),
            }
        },
        "outputs": {"artifacts": {"out": artifact("out", type=examples)}},
    }
    monkeypatch.setenv("MIMO_KFP_LOCAL_MOUNT", "/pod")
    changes = adjust(executor_input, spec)
    inputs = executor_input["inputs"]["artifacts"]
    for key in "abc":
        assert inputs[key]["artifacts"][0]["type"] == examples, key
    assert inputs["d"]["artifacts"][0]["type"] == {"schemaTitle": "tfx.Examples"}  # kept
    assert [inputs[k]["artifacts"][0]["name"] for k in "abd"] == ["17", "18", "19"]
    assert inputs["c"]["artifacts"][0]["name"].startswith("artifacts/")
    out = executor_input["outputs"]["artifacts"]["out"]["artifacts"][0]
    assert out["uri"] == "/pod/minio/mlpipeline/v2/x/out" and "name" not in out
    assert to_remote(out["uri"]) == "minio://mlpipeline/v2/x/out"
    assert to_local("gs://b/p") == "gs://b/p"  # TensorFlow writes gs:// itself
    assert to_local("s3://b/p") == "/pod/s3/b/p"
    assert len([c for c in changes if "type" in c]) == 3


def test_a_beats_gate_conditions_the_push_on_both_blessings(tmp_path):
    """With a `beats: gbdt` gate the pusher runs only when the Evaluator and the BoostedEvaluator
    both blessed the model: one KFP trigger condition over two of the pusher's own inputs."""
    raw = load_spec(MOVIES_SPEC).to_dict()
    raw["outputs"][0]["gates"].append({"metric": "mae", "beats": "gbdt", "max_regression": 0.5})
    spec = Spec.from_dict(raw)
    path = str(tmp_path / "pipeline.yaml")
    compile_kubeflow(kubeflow_pipeline(spec, [], registry="/mnt/models"), path, image=IMAGE)
    ir = json_format.MessageToDict(kfp_components.load_component_from_file(path).pipeline_spec)
    pusher = ir["root"]["dag"]["tasks"]["RegistryPusher"]
    assert pusher["inputs"]["artifacts"]["rival_blessing"] == {
        "taskOutputArtifact": {"producerTask": "BoostedEvaluator", "outputArtifactKey": "blessing"}
    }
    condition = pusher["triggerPolicy"]["condition"]
    for name in ("model_blessing", "rival_blessing"):
        assert f"inputs.artifacts['{name}'].artifacts[0].metadata['blessed'] == 1.0" in condition
    assert "&&" in condition
    # What the KFP harness (tests/kubeflow/kfp_launcher.py) reads of it: both must say blessed.
    import sys

    sys.path.insert(0, os.path.dirname(__file__))
    from kfp_launcher import evaluate_condition

    def inputs(model, rival):
        meta = {"model_blessing": model, "rival_blessing": rival}
        return {
            "inputs": {
                "artifacts": {
                    k: {"artifacts": [{"metadata": {"blessed": v}}]} for k, v in meta.items()
                }
            }
        }

    assert evaluate_condition(condition, inputs(1, 1))
    assert not evaluate_condition(condition, inputs(1, 0))
    assert not evaluate_condition(condition, inputs(0, 1))


def test_a_tuned_spec_compiles_tfx_tuner_feeding_the_trainer_with_its_resources(tmp_path):
    """tuning.trials: the Tuner is a task of its own (no resolver: open-source KFP runs it), on
    the Trainer's resources, with the run-time train steps; the Trainer reads its
    best_hyperparameters."""
    raw = load_spec(MOVIES_SPEC).to_dict()
    raw["tuning"] = {"trials": 6}
    path = str(tmp_path / "pipeline.yaml")
    resources = Resources(trainer_accelerator="NVIDIA_L4", trainer_accelerator_count=1)
    pipeline = kubeflow_pipeline(Spec.from_dict(raw), [], resources, registry="/mnt/models")
    compile_kubeflow(pipeline, path, image=IMAGE)
    ir = json_format.MessageToDict(kfp_components.load_component_from_file(path).pipeline_spec)
    trainer = ir["root"]["dag"]["tasks"]["Trainer"]
    assert trainer["inputs"]["artifacts"]["hyperparameters"] == {
        "taskOutputArtifact": {"producerTask": "Tuner", "outputArtifactKey": "best_hyperparameters"}
    }
    tuner = ir["root"]["dag"]["tasks"]["Tuner"]
    assert tuner["inputs"]["artifacts"]["examples"]["taskOutputArtifact"]["producerTask"] == (
        "Transform"
    )
    assert "train_args" in tuner["inputs"]["parameters"]
    executors = ir["deploymentSpec"]["executors"]
    assert executors["Tuner_executor"]["container"]["resources"]["accelerator"] == {
        "type": "NVIDIA_L4",
        "count": "1",
    }
    assert "tuner_fn" in json.dumps(executors["Tuner_executor"])

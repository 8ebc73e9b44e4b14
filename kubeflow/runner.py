"""Compiles the pipeline for Kubeflow Pipelines (KFP v2) with TFX's KubeflowV2DagRunner.

The same `create_pipeline` as every other runner; what differs here: the data root and the
Trainer's steps are run-time parameters, every component asks for CPU and memory (the Trainer
for a GPU), Beam runs on a distributed runner, and every step runs in the pipeline image
(kubeflow/Dockerfile). The pipeline root is KFP's own run-time setting (`pipeline_root` when a
run or recurring run is created, see kubeflow/schedule.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass

from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx import version as tfx_version
from tfx.dsl.components.base.base_component import BaseComponent
from tfx.orchestration.data_types import RuntimeParameter
from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner
from tfx.orchestration.pipeline import Pipeline

from kubeflow import DEFAULT_IMAGE, IMAGE_PROJECT_DIR
from pipeline import constants
from pipeline.pipeline import create_pipeline
from pipeline.runners import Command, Runner, register
from pipeline.runners.beam import BeamArgsError, add_beam_flags, beam_args, options_from_flags
from pipeline.spec import Spec

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The run-time parameters of the compiled pipeline.
DATA_ROOT = "data_root"
TRAIN_ARGS = "train_args"
BASELINE_STEP = "PublishedBaseline"
REPORT_STEP = "RunReport"
ENTRYPOINT = ("python", "-m", "kubeflow.entrypoint")

ResourceSpec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec


@dataclass(frozen=True)
class Resources:
    """Kubernetes requests/limits per step. Memory in GB (KFP's unit)."""

    trainer_accelerator: str = "NVIDIA_TESLA_T4"  # "" for a CPU-only Trainer
    trainer_accelerator_count: int = 1
    trainer_cpu: float = 8
    trainer_memory: float = 32
    beam_cpu: float = 4  # ExampleGen, StatisticsGen, Transform, Evaluators; the boosted trees
    beam_memory: float = 16
    small_cpu: float = 1  # SchemaGen, ExampleValidator, DataGate, Pusher
    small_memory: float = 4


BEAM_COMPONENTS = ("ExampleGen", "StatisticsGen", "Transform", "Evaluator")
BOOSTED_TRAINER = constants.BOOSTED_TRAINER


def _resource_spec(cpu: float, memory: float, accelerator: str = "", count: int = 0):
    spec = ResourceSpec(cpu_request=cpu, cpu_limit=cpu, memory_request=memory, memory_limit=memory)
    if accelerator:
        spec.accelerator.type = accelerator
        spec.accelerator.count = count
    return spec


def image_path(path: str) -> str:
    """A path inside the repository, as the pipeline image sees it; other paths unchanged."""
    rel = os.path.relpath(os.path.abspath(path), REPO)
    if rel.startswith(".."):
        return path
    return f"{IMAGE_PROJECT_DIR}/{rel}"


def kubeflow_name(name: str) -> str:
    """The spec's name as Kubeflow accepts a pipeline name ([a-z0-9][a-z0-9-]{0,127}): the spec
    allows capitals and '_', so `Movies_v2` becomes `movies-v2`. The registry keeps the spec's
    name; only the pipeline's name in Kubeflow (and its ML Metadata contexts there) changes."""
    return name.lower().replace("_", "-")[:128]


def kubeflow_pipeline(
    spec: Spec,
    beam_pipeline_args: list[str],
    resources: Resources | None = None,
    data_root: str | None = None,
    train_steps: int = 0,
    registry: str = "",
    mlflow_tracking_uri: str = "",
    pipeline_root: str = "",
) -> Pipeline:
    """The TFX pipeline as Kubeflow runs it (not yet compiled)."""
    # The bundled data and a curated schema, as the image has them (other paths as given).
    data = dataclasses.replace(spec.data, root=image_path(spec.data.root))
    if data.schema:
        data = dataclasses.replace(data, schema=image_path(data.schema))
    spec = dataclasses.replace(spec, data=data)
    pipeline = create_pipeline(
        spec,
        # KFP chooses where artifacts go (the run's pipeline root); this is only the default.
        pipeline_root=pipeline_root or "minio://mlpipeline/v2/artifacts",
        beam_pipeline_args=beam_pipeline_args,
        # Every scheduled run trains on the data it reads; KFP caches steps whose inputs did not
        # change (and never ExampleGen, see compile_kubeflow).
        retrain=False,
        pipeline_name=kubeflow_name(spec.name),
        registry=registry or None,
        mlflow_tracking_uri=mlflow_tracking_uri,
        data_root=RuntimeParameter(name=DATA_ROOT, ptype=str, default=data_root or spec.data.root),
        train_steps=RuntimeParameter(
            name=TRAIN_ARGS, ptype=str, default=json.dumps({"num_steps": int(train_steps)})
        ),
    )
    for component in pipeline.components:
        if component.id in (BASELINE_STEP, REPORT_STEP):
            # KFP's cache is off for the baseline step (compile_kubeflow) and the report's
            # inputs change with every trained model; without a per-compile id the compiled
            # package is the same for the same spec and flags.
            component.exec_properties["run"] = ""
    r = resources or Resources()
    for component in pipeline.components:
        if component.id in ("Trainer", "Tuner"):  # the Tuner's trials are trainings too
            config = _resource_spec(
                r.trainer_cpu,
                r.trainer_memory,
                r.trainer_accelerator,
                r.trainer_accelerator_count if r.trainer_accelerator else 0,
            )
        elif component.id.endswith(BEAM_COMPONENTS) or component.id == BOOSTED_TRAINER:
            # The boosted trees (YDF) use every core they get, as a Beam step does.
            config = _resource_spec(r.beam_cpu, r.beam_memory)
        else:
            config = _resource_spec(r.small_cpu, r.small_memory)
        component.with_platform_config(config)
    return pipeline


def runtime_parameter_defaults(pipeline: Pipeline) -> dict:
    """{name: default} of every RuntimeParameter the pipeline's components take."""
    found = {}
    for component in pipeline.components:
        for value in component.exec_properties.values():
            if isinstance(value, RuntimeParameter):
                found[value.name] = value.default
    return found


def condition_on_inputs(condition: str, task: dict) -> str:
    """A task's trigger condition over its own inputs.

    TFX 1.16 writes a `Cond` on a channel the task also consumes as `inputs.artifacts['_<producer
    step>.<output>']` (the channel's implicit key), but gives the task that channel only under its
    own input name (the pusher's `model_blessing`), so the name in the condition is no input of
    the task and KFP cannot evaluate it. Each such name becomes the task's input that is the same
    producer's same output.
    """
    artifacts = task.get("inputs", {}).get("artifacts", {})

    def input_key(match: re.Match) -> str:
        producer, output = match.group(1), match.group(2)
        for key, source in artifacts.items():
            upstream = source.get("taskOutputArtifact", {})
            if upstream == {"producerTask": producer, "outputArtifactKey": output}:
                return f"inputs.artifacts['{key}']"
        raise ValueError(f"the condition {condition!r} reads {producer}.{output}, no input")

    return re.sub(r"inputs\.artifacts\['_([^'.]+)\.([^']+)'\]", input_key, condition)


def compile_kubeflow(pipeline: Pipeline, output_file: str, image: str) -> dict:
    """Writes the KFP v2 pipeline spec (YAML, what the KFP UI and SDK upload) to output_file."""
    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(
            default_image=image,
            # Every step starts in kubeflow/entrypoint.py, which adapts what the open-source
            # backend hands a task and then runs TFX's own container entrypoint.
            default_commands=list(ENTRYPOINT),
            use_pipeline_spec_2_1=True,  # KFP 2.x: schema 2.1.0
        ),
        output_dir=os.path.dirname(os.path.abspath(output_file)),
        output_filename=os.path.basename(output_file),
    )
    job = runner.run(pipeline, write_out=False)
    spec = job["pipelineSpec"]
    # TFX leaves run-time parameters' defaults out of the spec (they go in a Vertex job's
    # runtimeConfig): put them where KFP looks, so a run needs no argument.
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    for name, default in runtime_parameter_defaults(pipeline).items():
        parameters[name]["defaultValue"] = default
        parameters[name]["isOptional"] = True
    # TFX 1.16 drops the platform config of file-based ExampleGens (step_builder builds their
    # container without it): every step gets the resources it was given.
    executors = spec["deploymentSpec"]["executors"]
    for component in pipeline.components:
        executor = executors.get(f"{component.id}_executor", {})
        if isinstance(component, BaseComponent) and component.platform_config and executor:
            executor["container"]["resources"] = json_format.MessageToDict(
                component.platform_config
            )
    # ExampleGen reads a directory whose files change between scheduled runs under the same
    # parameters: KFP's cache must not hand back last week's examples.
    # Nor may the baseline step hand back the model that was published last week.
    for name, task in spec["root"]["dag"]["tasks"].items():
        if name.endswith("ExampleGen") or name == BASELINE_STEP:
            task.pop("cachingOptions", None)
    for task in spec["root"]["dag"]["tasks"].values():
        if "condition" in task.get("triggerPolicy", {}):
            policy = task["triggerPolicy"]
            policy["condition"] = condition_on_inputs(policy["condition"], task)
    kubeflow_v2_dag_runner._write_pipeline_spec_to_file(  # noqa: SLF001 - TFX's own YAML writer
        job,
        f"{pipeline.pipeline_info.pipeline_name}: compiled by mimo (tfx {tfx_version.__version__})",
        os.path.abspath(output_file),
    )
    return spec


def check_flags(args) -> None:
    """What `mimo compile kubeflow` can tell is wrong before compiling; ValueError says what."""
    if args.output.endswith(os.sep) or os.path.isdir(args.output):
        raise ValueError(f"--output {args.output}: a folder; name the package file (pipeline.yaml)")
    if not args.output.endswith((".yaml", ".yml", ".json")):
        raise ValueError(f"--output {args.output}: the package is a .yaml (or .json) file")
    # Every step runs in a pod: a path of this machine means nothing there.
    for flag, value in (("--registry", args.registry), ("--data-root", args.data_root)):
        if value and "://" not in value and not os.path.isabs(value):
            raise ValueError(
                f"{flag} {value}: a relative path; the steps run in pods, give an absolute "
                "path inside the image or a volume mounted in the pods"
            )
    if args.train_steps < 0:
        raise ValueError(f"--train-steps {args.train_steps}: must be 0 (whole epochs) or more")
    if not args.image:
        raise ValueError("--image: the pipeline image is required (kubeflow/Dockerfile)")
    for flag in ("trainer_cpu", "trainer_memory", "beam_cpu", "beam_memory"):
        if getattr(args, flag) <= 0:
            raise ValueError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: must be > 0")


class KubeflowRunner(Runner):
    name = "kubeflow"
    doc = "Kubeflow Pipelines v2: a compiled pipeline spec, recurring runs"

    def commands(self):
        return {
            "compile": Command("compile the pipeline for Kubeflow Pipelines", self.add, self.build),
            "schedule": Command(
                "create a recurring run on Kubeflow Pipelines",
                self.add_schedule,
                self.schedule,
                needs_spec=False,
            ),
        }

    def add(self, comp) -> None:
        comp.add_argument("--output", default="pipeline.yaml", help="the KFP pipeline spec (YAML)")
        comp.add_argument("--image", default=DEFAULT_IMAGE, help="the pipeline image (Dockerfile)")
        comp.add_argument(
            "--data-root",
            help="default of the data_root parameter (default: the "
            "spec's data directory inside the image)",
        )
        comp.add_argument(
            "--train-steps",
            type=int,
            default=0,
            help="default of the train_args parameter's num_steps (0: whole epochs)",
        )
        comp.add_argument(
            "--registry",
            required=True,
            help="the registry the pusher writes and the baseline step reads: gs://BUCKET/models "
            "(an object store, through tf.io.gfile) or the path of a volume mounted in the pods",
        )
        comp.add_argument("--mlflow-tracking-uri", default="", help="also register in MLflow")
        res = comp.add_argument_group("resources (Kubernetes requests = limits; memory in GB)")
        res.add_argument(
            "--trainer-accelerator",
            default="NVIDIA_TESLA_T4",
            help="GPU type for the Trainer; '' for none",
        )
        res.add_argument("--trainer-gpus", type=int, default=1)
        res.add_argument("--trainer-cpu", type=float, default=8)
        res.add_argument("--trainer-memory", type=float, default=32)
        res.add_argument("--beam-cpu", type=float, default=4)
        res.add_argument("--beam-memory", type=float, default=16)
        add_beam_flags(comp, required=True)

    def build(self, spec: Spec, args) -> int:
        import sys

        import tensorflow as tf

        try:
            beam = beam_args(options_from_flags(args, image=args.image))
            check_flags(args)
        except (BeamArgsError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        resources = Resources(
            trainer_accelerator=args.trainer_accelerator,
            trainer_accelerator_count=args.trainer_gpus,
            trainer_cpu=args.trainer_cpu,
            trainer_memory=args.trainer_memory,
            beam_cpu=args.beam_cpu,
            beam_memory=args.beam_memory,
        )
        pipeline = kubeflow_pipeline(
            spec,
            beam,
            resources,
            data_root=args.data_root,
            train_steps=args.train_steps,
            registry=args.registry,
            mlflow_tracking_uri=args.mlflow_tracking_uri,
        )
        try:
            os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
            compiled = compile_kubeflow(pipeline, args.output, image=args.image)
        except (OSError, tf.errors.OpError) as e:  # TFX writes the file through tf.io.gfile
            print(f"error: cannot write {args.output}: {e}", file=sys.stderr)
            return 2
        params = compiled["root"]["inputDefinitions"]["parameters"]
        print(
            f"Compiled '{spec.name}' for Kubeflow Pipelines as pipeline "
            f"'{pipeline.pipeline_info.pipeline_name}': {os.path.abspath(args.output)}"
        )
        print(f"  image: {args.image}")
        print(f"  steps: {', '.join(sorted(compiled['root']['dag']['tasks']))}")
        for name, p in sorted(params.items()):
            print(f"  run-time parameter {name} (default {p.get('defaultValue')!r})")
        print(f"  Beam: {' '.join(beam)}")
        return 0

    def add_schedule(self, sched) -> None:
        sched.add_argument("--host", required=True, help="the KFP API endpoint")
        sched.add_argument("--package", default="pipeline.yaml", help="the compiled pipeline")
        sched.add_argument("--cron", required=True, help="e.g. '0 0 3 * * *' (KFP: 6 fields)")
        sched.add_argument("--name", required=True, help="the recurring run's name")
        sched.add_argument("--experiment", default="mimo")
        sched.add_argument("--pipeline-root", default="", help="where the runs' artifacts go")
        sched.add_argument(
            "--param",
            action="append",
            metavar="NAME=VALUE",
            help="run-time parameter, e.g. --param data_root=gs://bucket/movies",
        )
        sched.add_argument("--namespace", help="multi-user Kubeflow: your profile namespace")

    def schedule(self, spec, args) -> int:
        import sys

        from kubeflow.schedule import (
            RecurringRun,
            ScheduleError,
            check_cron,
            create_recurring_run,
            parse_params,
        )

        try:
            check_cron(args.cron)
            run = RecurringRun(
                host=args.host,
                package=args.package,
                cron=args.cron,
                name=args.name,
                experiment=args.experiment,
                pipeline_root=args.pipeline_root,
                params=parse_params(args.param or []),
                namespace=args.namespace,
                start_date=spec.schedule["start_date"],
                catchup=spec.schedule["catchup"],
            )
        except ScheduleError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if not os.path.isfile(args.package):
            print(
                f"error: {args.package}: no such file (run `mimo compile kubeflow`)",
                file=sys.stderr,
            )
            return 2
        job = create_recurring_run(run)
        print(f"Recurring run '{args.name}' ({job.recurring_run_id}) on '{check_cron(args.cron)}'")
        return 0


register(KubeflowRunner())

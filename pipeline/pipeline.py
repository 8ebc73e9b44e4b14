"""The one pipeline factory. Every runner (local, notebook, Kubeflow, Airflow) calls it.

Runners differ only in how they run the result, where its root is, and the Beam arguments.
"""

from __future__ import annotations

import json
import uuid

# TFX's modules themselves, not `tfx.v1`: its extensions import Google Cloud AI Platform (5 s).
from tfx.components.example_gen.import_example_gen.component import ImportExampleGen
from tfx.components.example_validator.component import ExampleValidator
from tfx.components.schema_gen.component import SchemaGen
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.components.statistics_gen.component import StatisticsGen
from tfx.components.trainer.component import Trainer
from tfx.components.transform.component import Transform
from tfx.components.tuner.component import Tuner
from tfx.dsl.experimental.conditionals.conditional import Cond
from tfx.dsl.placeholder import placeholder as ph
from tfx.orchestration.data_types import RuntimeParameter
from tfx.orchestration.pipeline import Pipeline
from tfx.proto import example_gen_pb2, trainer_pb2

from components.baseline import Evaluator, PublishedBaseline
from components.csv_example_gen import CsvExampleGen, CsvOptions
from components.data_gate import DataGate
from components.pusher import RegistryPusher
from components.report import RunReport
from pipeline import constants
from pipeline.evaluation.eval_config import build_eval_config
from pipeline.spec import Spec
from pipeline.version import (
    BOOSTED_CODE,
    EXAMPLE_GEN_CODE,
    TRAINER_CODE,
    TRANSFORM_CODE,
    code_fingerprint,
)

PREPROCESSING_FN = "preprocessing.transform.preprocessing_fn"
RUN_FN = "trainer.task.run_fn"
TUNER_FN = "trainer.tuning.tuner_fn"
BOOSTED_RUN_FN = "trainer.gbdt.run_fn"


def _example_gen(spec: Spec, data_root=None):
    data = spec.data
    if data.hash_buckets:
        input_config = example_gen_pb2.Input(
            splits=[
                example_gen_pb2.Input.Split(
                    name="single_split", pattern=data.patterns["single_split"]
                )
            ]
        )
        split_config = example_gen_pb2.SplitConfig(
            splits=[
                example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=buckets)
                for name, buckets in data.hash_buckets.items()
            ],
        )
        if data.split_key:
            split_config.partition_feature_name = data.split_key
        output_config = example_gen_pb2.Output(split_config=split_config)
    else:
        input_config = example_gen_pb2.Input(
            splits=[
                example_gen_pb2.Input.Split(name=name, pattern=pattern)
                for name, pattern in data.patterns.items()
            ]
        )
        output_config = None
    input_base = data_root or data.root
    if data.format == "csv":
        return CsvExampleGen(input_base, input_config, output_config, csv_options(spec))
    return ImportExampleGen(
        input_base=input_base, input_config=input_config, output_config=output_config
    )


def csv_options(spec: Spec) -> CsvOptions:
    """How ExampleGen reads the spec's CSV: its missing-value tokens, and each column's type as
    the modality or head reading it wants it (`csv_type`)."""
    types = {c: i.modality_type.csv_type for i in spec.inputs for c in i.columns}
    types.update({o.column: o.head_type.csv_type for o in spec.outputs})
    return CsvOptions(
        na_values=spec.data.na_values,
        column_na_values=dict(spec.data.column_na_values),
        encoding=spec.data.encoding,
        column_types={column: t for column, t in types.items() if t},
        code=code_fingerprint(EXAMPLE_GEN_CODE),
    )


def create_pipeline(
    spec: Spec,
    pipeline_root: str,
    metadata_connection_config=None,
    beam_pipeline_args: list[str] | tuple = (),
    enable_cache: bool = True,
    train_steps: int | RuntimeParameter | None = None,
    retrain: bool = True,
    registry: str | None = None,
    mlflow_tracking_uri: str = "",
    data_root: str | RuntimeParameter | None = None,
    pipeline_name: str | None = None,
) -> Pipeline:
    """ExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator -> DataGate -> Transform
    -> Trainer (after TFX's Tuner, with tuning.trials) -> Evaluator (compared with the published
    model: PublishedBaseline) -> RegistryPusher; beside the Trainer, for each rival in `evaluation.baselines`, its own
    Trainer (BoostedTrainer: gradient-boosted trees per head on the same Transform output) and an
    Evaluator comparing the candidate with it (BoostedEvaluator; its `beats` gates must pass too).

    Training settings come from the spec (`training:`); `train_steps` caps the training steps
    (spread over the spec's epochs) when given, otherwise every epoch reads the whole split.
    With `retrain` (the default) every run trains a new candidate model, while ExampleGen to
    Transform stay cached when their inputs are unchanged; `retrain=False` reuses a cached model.
    Then the Evaluator (per head, per slice, gated; compared with the published model) and,
    when a `registry` directory is given, the RegistryPusher, run only if the model is blessed
    (and also registering it in MLflow when `mlflow_tracking_uri` is set).

    Orchestrators that take run-time parameters (Kubeflow) pass `data_root` (the directory the
    spec's file patterns are read under, instead of the spec's own) and `train_steps` (the
    Trainer's TrainArgs as JSON, e.g. '{"num_steps": 2000}') as RuntimeParameters.
    """
    # Where the spec file was read from is not part of what the components compute.
    # Nor is when it is scheduled.
    spec_dict = {k: v for k, v in spec.to_dict().items() if k not in ("source", "schedule")}
    # Each component gets the part of the spec it uses, so that changing a gate (or a drift
    # threshold) re-runs the Evaluator (the data gate) but reuses the cached Transform and
    # Trainer (and changing training settings reuses the cached Transform).
    training_dict = {
        **{k: v for k, v in spec_dict.items() if k not in ("evaluation", "monitoring")},
        "outputs": [{**o, "gates": []} for o in spec_dict["outputs"]],
    }
    transform_dict = {
        k: v for k, v in training_dict.items() if k not in ("training", "model", "tuning")
    }

    run_id = uuid.uuid4().hex  # a parameter of the steps that must never come from the cache
    example_gen = _example_gen(spec, data_root)
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
    if spec.data.schema:
        schema_gen = ImportSchemaGen(schema_file=spec.data.schema)
    else:
        schema_gen = SchemaGen(
            statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True
        )
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    # The model published now (not an MLMD query: no Resolver, which open-source Kubeflow
    # cannot run), and the statistics of the data it was trained on; with no registry, the model
    # is gated by values only and no drift is measured. Never from the cache: what is published
    # changes between runs with the same parameters (`run`; the Kubeflow compiler turns KFP's
    # cache off for it).
    baseline = None
    if registry or mlflow_tracking_uri:
        baseline = PublishedBaseline(
            model_name=spec.name,
            registry=registry or "",
            mlflow_tracking_uri=mlflow_tracking_uri,
            run=run_id,
        )
    data_gate = DataGate(
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_gen.outputs["schema"],
        anomalies=example_validator.outputs["anomalies"],
        examples=example_gen.outputs["examples"],  # the span it read
        # drift against the published model's training data (monitoring:)
        baseline=baseline.outputs["baseline"] if baseline else None,
        spec=json.dumps(spec_dict),
    )
    transform = Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        custom_config={"spec": transform_dict, "code": code_fingerprint(TRANSFORM_CODE)},
        # TFX's default computes statistics and anomalies of the raw data again (StatisticsGen
        # and the data gate did) and of the transformed data (nothing reads them), five TFDV
        # passes in all.
        disable_statistics=True,
    )
    transform.add_upstream_node(data_gate)
    train_args = (
        train_steps
        if isinstance(train_steps, RuntimeParameter)
        else trainer_pb2.TrainArgs(num_steps=train_steps)
        if train_steps
        else None
    )
    # What the Tuner, the Trainer and the boosted trees read: the Transform output and the schema.
    transformed = {
        "examples": transform.outputs["transformed_examples"],
        "transform_graph": transform.outputs["transform_graph"],
        "schema": schema_gen.outputs["schema"],
    }
    # Early stopping, model selection and the Tuner's trials watch the validation split, never
    # eval.
    validation = trainer_pb2.EvalArgs(splits=["validation"], num_steps=None)
    # tuning.trials: TFX's Tuner searches the spec's options first (trainer/tuning.py); cached
    # like the Trainer's inputs, so a re-run with the same spec and data reuses the search.
    tuner = None
    if spec.tuning["trials"]:
        tuner = Tuner(
            tuner_fn=TUNER_FN,
            **transformed,
            train_args=train_args,
            eval_args=validation,
            custom_config={"spec": training_dict, "code": code_fingerprint(TRAINER_CODE)},
        )
    trainer = Trainer(
        run_fn=RUN_FN,
        **transformed,
        hyperparameters=tuner.outputs["best_hyperparameters"] if tuner else None,
        train_args=train_args,
        eval_args=validation,
        custom_config={
            # `tuning:` reaches the Trainer only with a Tuner (the space decodes its values).
            "spec": training_dict
            if tuner
            else {k: v for k, v in training_dict.items() if k != "tuning"},
            "code": code_fingerprint(TRAINER_CODE),
            **({"run": run_id} if retrain else {}),
        },
    )

    components = [
        example_gen,
        statistics_gen,
        schema_gen,
        example_validator,
        data_gate,
        transform,
        *([tuner] if tuner else []),
        trainer,
    ]
    if baseline:
        components.append(baseline)
    evaluator = Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["baseline"] if baseline else None,
        example_splits=["eval"],  # the split that chose nothing: honest gates
        eval_config=build_eval_config(spec),
    )
    components.append(evaluator)
    # The rival: boosted trees per head, trained once per Transform output (cached like one),
    # and the candidate evaluated against it as TFMA's baseline, per head and slice.
    rival = boosted = None
    if "gbdt" in spec.evaluation["baselines"]:
        boosted = Trainer(
            run_fn=BOOSTED_RUN_FN,
            **transformed,
            eval_args=validation,
            # The trees read the transformed data and the seed only: other training or model
            # settings reuse them from the cache.
            custom_config={
                "spec": {**transform_dict, "training": {"seed": spec.training["seed"]}},
                "code": code_fingerprint(BOOSTED_CODE),
            },
        ).with_id(constants.BOOSTED_TRAINER)
        rival = Evaluator(
            examples=example_gen.outputs["examples"],
            model=trainer.outputs["model"],
            baseline_model=boosted.outputs["model"],
            example_splits=["eval"],
            eval_config=build_eval_config(spec, rival="gbdt"),
        ).with_id(constants.BOOSTED_EVALUATOR)
        components += [boosted, rival]
    # report.html, whatever the verdict (components/report.py); one per run (`run`).
    report = RunReport(
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_gen.outputs["schema"],
        anomalies=example_validator.outputs["anomalies"],
        model_run=trainer.outputs["model_run"],
        evaluation=evaluator.outputs["evaluation"],
        blessing=evaluator.outputs["blessing"],
        rival_evaluation=rival.outputs["evaluation"] if rival else None,
        rival_model_run=boosted.outputs["model_run"] if boosted else None,
        examples=example_gen.outputs["examples"],
        baseline=baseline.outputs["baseline"] if baseline else None,
        spec=json.dumps(spec_dict),
        run=run_id,
    )
    components.append(report)
    if registry:
        blessed = evaluator.outputs["blessing"].future()[0].custom_property(constants.BLESSED) == 1
        rival_blessing = None
        if rival and any(g.beats for o in spec.outputs for g in o.gates):
            # Its blessing says whether every `beats` gate passed (TFMA's change thresholds).
            rival_blessing = rival.outputs["blessing"]
            beaten = rival_blessing.future()[0].custom_property(constants.BLESSED) == 1
            blessed = ph.logical_and(blessed, beaten)
        with Cond(blessed):
            pusher = RegistryPusher(
                model=trainer.outputs["model"],
                model_blessing=evaluator.outputs["blessing"],
                evaluation=evaluator.outputs["evaluation"],
                rival_evaluation=rival.outputs["evaluation"] if rival else None,
                rival_blessing=rival_blessing,
                examples=example_gen.outputs["examples"],
                statistics=statistics_gen.outputs["statistics"],  # published for monitoring
                schema=schema_gen.outputs["schema"],
                report=report.outputs["report"],
                registry=registry,
                spec=json.dumps(spec_dict),
                mlflow_tracking_uri=mlflow_tracking_uri,
            )
        components.append(pusher)
    return Pipeline(
        pipeline_name=pipeline_name or spec.name,  # an orchestrator's own spelling of it
        pipeline_root=pipeline_root,
        components=components,
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args),
    )

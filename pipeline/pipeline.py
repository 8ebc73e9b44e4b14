"""The one pipeline factory. Every runner (local, notebook, Kubeflow, Airflow) calls it.

Runners differ only in how they run the result, where its root is, and the Beam arguments.
"""

from __future__ import annotations

import json

from tfx import v1 as tfx
from tfx.proto import example_gen_pb2, trainer_pb2

from components.data_gate import DataGate
from pipeline.spec import Spec
from pipeline.version import code_fingerprint

PREPROCESSING_FN = "preprocessing.transform.preprocessing_fn"
RUN_FN = "trainer.task.run_fn"


def _example_gen(spec: Spec):
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
            partition_feature_name=data.split_key or "",
        )
        output_config = example_gen_pb2.Output(split_config=split_config)
    else:
        input_config = example_gen_pb2.Input(
            splits=[
                example_gen_pb2.Input.Split(name=name, pattern=pattern)
                for name, pattern in data.patterns.items()
            ]
        )
        output_config = None
    cls = tfx.components.CsvExampleGen if data.format == "csv" else tfx.components.ImportExampleGen
    return cls(input_base=data.root, input_config=input_config, output_config=output_config)


def create_pipeline(
    spec: Spec,
    pipeline_root: str,
    metadata_connection_config=None,
    beam_pipeline_args: list[str] | tuple = (),
    enable_cache: bool = True,
    train_steps: int | None = None,
) -> tfx.dsl.Pipeline:
    """ExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator -> DataGate -> Transform
    -> Trainer.

    Training settings come from the spec (`training:`); `train_steps` caps the training steps
    (spread over the spec's epochs) when given, otherwise every epoch reads the whole split.
    """
    spec_dict = spec.to_dict()

    example_gen = _example_gen(spec)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    if spec.data.schema:
        schema_gen = tfx.components.ImportSchemaGen(schema_file=spec.data.schema)
    else:
        schema_gen = tfx.components.SchemaGen(
            statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True
        )
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    data_gate = DataGate(
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_gen.outputs["schema"],
        anomalies=example_validator.outputs["anomalies"],
        spec=json.dumps(spec_dict),
    )
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        custom_config={"spec": spec_dict, "code": code_fingerprint()},
    )
    transform.add_upstream_node(data_gate)
    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=trainer_pb2.TrainArgs(num_steps=train_steps) if train_steps else None,
        eval_args=trainer_pb2.EvalArgs(num_steps=None),
        custom_config={"spec": spec_dict, "code": code_fingerprint()},
    )

    return tfx.dsl.Pipeline(
        pipeline_name=spec.name,
        pipeline_root=pipeline_root,
        components=[
            example_gen,
            statistics_gen,
            schema_gen,
            example_validator,
            data_gate,
            transform,
            trainer,
        ],
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args),
    )

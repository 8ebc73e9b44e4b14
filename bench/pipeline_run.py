"""One pipeline run in its own process (so that its memory is measured alone):

python -m bench.pipeline_run mimo SPEC OUT [--beam ARG ...] [--train-steps N]
python -m bench.pipeline_run penguin CSV_DIR OUT [--beam ARG ...]
"""

from __future__ import annotations

import argparse
import os
import sys

from pipeline import env as _env  # noqa: F401  (before TensorFlow)


def run_mimo(spec_path, out, beam, train_steps):
    from pipeline.runners.local import run_local
    from pipeline.spec import load_spec

    paths = run_local(
        load_spec(spec_path), out, beam_args=beam, enable_cache=False, train_steps=train_steps
    )
    print(f"METADATA {paths.metadata_path}")


def run_penguin(data_dir, out, beam):
    """TFX's own penguin example pipeline, as shipped in the tfx wheel (Keras, no Tuner)."""
    import tfx.examples.penguin as penguin_pkg
    from absl import flags
    from tfx.examples.penguin import penguin_pipeline_local as penguin
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    flags.FLAGS(["penguin"])
    module_file = os.path.join(os.path.dirname(penguin_pkg.__file__), "penguin_utils_keras.py")
    metadata = os.path.join(out, "metadata.db")
    pipeline = penguin.create_pipeline(
        pipeline_name="penguin_bench",
        pipeline_root=os.path.join(out, "pipeline"),
        data_root=data_dir,
        module_file=module_file,
        accuracy_threshold=0.6,
        serving_model_dir=os.path.join(out, "serving_model"),
        metadata_path=metadata,
        user_provided_schema_path=None,
        enable_tuning=False,  # KerasTuner 1.4 rejects tf_keras models
        enable_bulk_inferrer=False,
        enable_example_diff=False,
        examplegen_input_config=None,
        examplegen_range_config_date=None,
        resolver_range_config=None,
        beam_pipeline_args=beam,
        enable_transform_input_cache=False,
    )
    LocalDagRunner().run(pipeline)
    print(f"METADATA {metadata}")


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["mimo", "penguin"])
    parser.add_argument("source")
    parser.add_argument("out")
    parser.add_argument("--beam", action="append", default=[])
    parser.add_argument("--train-steps", type=int, default=None)
    args = parser.parse_args(argv)
    if args.kind == "mimo":
        run_mimo(args.source, args.out, args.beam, args.train_steps)
    else:
        run_penguin(args.source, args.out, args.beam)
    return 0


if __name__ == "__main__":
    sys.exit(main())

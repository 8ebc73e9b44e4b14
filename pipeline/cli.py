"""`mimo`: the command line.

mimo run --spec data/movies/movies.yaml --output runs     # the local pipeline
mimo validate --spec SPEC                                 # check a spec, run nothing
mimo compile kubeflow --spec SPEC --beam-runner dataflow ...  # a KFP v2 pipeline spec
mimo schedule kubeflow --host URL --cron '0 0 3 * * *' ...  # a recurring run on KFP
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from pipeline import env as _env  # noqa: F401  (before TensorFlow)


class _ProgressOnly(logging.Filter):
    """Lets through errors and the runner's 'Component X is running/finished.' lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        message = record.getMessage()
        return message.startswith("Component ") and message.endswith(
            (" is running.", " is finished.")
        )


def configure_logging(verbose: bool) -> None:
    """One handler on the root logger; unless verbose, it shows progress and errors only."""
    from absl import logging as absl_logging

    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    if not verbose:
        handler.addFilter(_ProgressOnly())
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    absl_logging.set_verbosity(absl_logging.INFO)
    if not verbose:  # TensorFlow's logger has a handler of its own and does not propagate
        logging.getLogger("tensorflow").setLevel(logging.ERROR)


def _find_cause(exc: BaseException, cls) -> BaseException | None:
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, cls):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _print_outputs(paths) -> None:
    from pipeline.local import latest_run_outputs

    outputs = latest_run_outputs(paths.metadata_path)
    shown = [
        ("CsvExampleGen", "examples", "examples"),
        ("ImportExampleGen", "examples", "examples"),
        ("StatisticsGen", "statistics", "statistics"),
        ("SchemaGen", "schema", "schema"),
        ("ImportSchemaGen", "schema", "schema (user-curated)"),
        ("ExampleValidator", "anomalies", "anomalies"),
        ("Transform", "transformed_examples", "transformed examples"),
        ("Transform", "transform_graph", "transform graph"),
        ("Transform", "post_transform_stats", "post-transform statistics"),
        ("Trainer", "model", "model (SavedModel)"),
        ("Trainer", "model_run", "training logs (TensorBoard)"),
    ]
    print("\nArtifacts of this run:")
    for component, key, label in shown:
        for artifact in outputs.get(component, {}).get(key, []):
            print(f"  {label:28s} {artifact.uri}")
    print(f"  {'ML Metadata':28s} {paths.metadata_path}")
    for artifact in outputs.get("Trainer", {}).get("model_run", []):
        print_training_report(artifact.uri)
    return outputs


def _print_evaluation_and_push(spec, outputs) -> None:
    from components.pusher import evaluation_summary
    from pipeline.report import print_evaluation

    evaluator = outputs.get("Evaluator", {})
    if not evaluator.get("evaluation"):
        return
    blessing = evaluator["blessing"][0]
    blessed = blessing.custom_properties["blessed"].int_value == 1
    print_evaluation(spec, evaluation_summary(evaluator["evaluation"][0].uri), blessed)
    pushed = outputs.get("RegistryPusher", {}).get("pushed_model", [])
    if pushed and pushed[0].custom_properties["pushed"].int_value == 1:
        props = pushed[0].custom_properties
        print(
            f"Pushed version {props['pushed_version'].int_value}: "
            f"{props['pushed_destination'].string_value}"
        )
        if "mlflow_version" in props:
            print(f"Registered in MLflow as version {props['mlflow_version'].string_value}")
    elif pushed and "pushed_version" in pushed[0].custom_properties:
        props = pushed[0].custom_properties
        print(
            f"Nothing pushed: this model is already version {props['pushed_version'].int_value}"
            f" ({props['pushed_destination'].string_value})."
        )
    else:
        print("Nothing pushed: the registry is as it was.")


def print_training_report(model_run_uri: str) -> None:
    """Per-head validation metrics next to what a trivial predictor scores."""
    import json

    from trainer.task import REPORT_FILE

    path = os.path.join(model_run_uri, REPORT_FILE)
    if not os.path.exists(path):
        return
    with open(path) as f:
        report = json.load(f)
    print(
        f"\nValidation metrics ({report['eval_examples']} eval examples; best of "
        f"{report['epochs_run']} epochs: {report['best_epoch']}; {report['strategy']} x"
        f"{report['replicas']}, batch {report['global_batch_size']}):"
    )
    print(f"  {'head':12s} {'metric':16s} {'model':>10s} {'trivial':>10s}  better?")
    lower_is_better = {"loss", "mae", "rmse"}
    for head, h in report["heads"].items():
        for metric, value in h["metrics"].items():
            base = h["baseline"].get(metric)
            if base is None:
                print(f"  {head:12s} {metric:16s} {value:10.4f} {'':>10s}")
                continue
            better = value < base if metric in lower_is_better else value > base
            print(
                f"  {head:12s} {metric:16s} {value:10.4f} {base:10.4f}  "
                f"{'yes' if better else 'NO'}"
            )


def cmd_run(args) -> int:
    from components.data_gate import DataValidationError
    from pipeline.beam import BeamArgsError, beam_args, options_from_flags
    from pipeline.local import run_local
    from pipeline.spec import SpecError, load_spec

    try:
        spec = load_spec(args.spec)
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    configure_logging(args.verbose)
    try:
        beam = beam_args(options_from_flags(args)) + list(args.beam_arg or [])
    except BeamArgsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"Running pipeline '{spec.name}' on {spec.data.path} -> {os.path.abspath(args.output)}")
    try:
        paths = run_local(
            spec,
            args.output,
            beam_args=beam,
            enable_cache=not args.no_cache,
            registry=args.registry,
            mlflow_tracking_uri=args.mlflow_tracking_uri or "",
        )
    except Exception as e:  # noqa: BLE001 - reduce known data errors to their message
        cause = _find_cause(e, DataValidationError)
        if cause is None:
            raise
        print(f"\nerror: {cause}", file=sys.stderr)
        return 3
    outputs = _print_outputs(paths)
    _print_evaluation_and_push(spec, outputs)
    return 0


def cmd_compile(args) -> int:
    from kubeflow.runner import Resources, compile_kubeflow, kubeflow_pipeline
    from pipeline.beam import BeamArgsError, beam_args, options_from_flags
    from pipeline.spec import SpecError, load_spec

    try:
        spec = load_spec(args.spec)
        beam = beam_args(options_from_flags(args, image=args.image))
    except (SpecError, BeamArgsError) as e:
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
    compiled = compile_kubeflow(pipeline, args.output, image=args.image)
    params = compiled["root"]["inputDefinitions"]["parameters"]
    print(f"Compiled '{spec.name}' for Kubeflow Pipelines: {os.path.abspath(args.output)}")
    print(f"  image: {args.image}")
    print(f"  steps: {', '.join(sorted(compiled['root']['dag']['tasks']))}")
    for name, p in sorted(params.items()):
        print(f"  run-time parameter {name} (default {p.get('defaultValue')!r})")
    print(f"  Beam: {' '.join(beam)}")
    return 0


def cmd_schedule(args) -> int:
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
        )
    except ScheduleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not os.path.isfile(args.package):
        print(f"error: {args.package}: no such file (run `mimo compile kubeflow`)", file=sys.stderr)
        return 2
    job = create_recurring_run(run)
    print(f"Recurring run '{args.name}' ({job.recurring_run_id}) on '{check_cron(args.cron)}'")
    return 0


def cmd_models(args) -> int:
    from components.registry import Registry, RegistryError
    from pipeline.report import print_card, print_models

    registry = Registry(args.registry)
    try:
        if args.action == "list":
            names = [args.name] if args.name else registry.models()
            if not names:
                print(f"no model in {registry.root}")
            for name in names:
                print_models(registry, name)
        elif args.action == "show":
            print_card(registry, args.name, args.version or registry.latest(args.name))
        else:
            version = registry.rollback(args.name, args.version)
            print(
                f"{args.name}: version {args.version} re-published as version {version}, "
                "now the one TF Serving serves"
            )
    except RegistryError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def cmd_validate(args) -> int:
    from pipeline.spec import SpecError, load_spec

    try:
        spec = load_spec(args.spec)
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"{args.spec}: OK ({len(spec.inputs)} inputs, {len(spec.outputs)} heads, "
        f"{len(spec.slices)} slices)"
    )
    return 0


def main(argv=None) -> int:
    from kubeflow import DEFAULT_IMAGE
    from pipeline.beam import add_beam_flags

    parser = argparse.ArgumentParser(prog="mimo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the pipeline locally (LocalDagRunner)")
    run.add_argument("--spec", required=True, help="the dataset spec (YAML)")
    run.add_argument(
        "--output",
        default="runs",
        help="directory for pipeline artifacts and ML Metadata (default: ./runs)",
    )
    add_beam_flags(run)
    run.add_argument(
        "--beam-arg",
        action="append",
        metavar="ARG",
        help="extra Beam pipeline argument, e.g. --beam-arg=--direct_num_workers=2",
    )
    run.add_argument("--registry", help="model registry directory (default: OUTPUT/registry)")
    run.add_argument("--mlflow-tracking-uri", help="also register blessed models in MLflow")
    run.add_argument("--no-cache", action="store_true", help="re-run every component")
    run.add_argument("--verbose", action="store_true", help="show every log line of TFX and Beam")
    run.set_defaults(func=cmd_run)
    models = sub.add_parser("models", help="the registry: list, show, rollback")
    models.add_argument("action", choices=["list", "show", "rollback"])
    models.add_argument("name", nargs="?", help="model name (the spec's name)")
    models.add_argument("version", nargs="?", type=int)
    models.add_argument("--registry", default=os.path.join("runs", "registry"))
    models.set_defaults(func=cmd_models)
    comp = sub.add_parser("compile", help="compile the pipeline for an orchestrator")
    comp.add_argument("target", choices=["kubeflow"])
    comp.add_argument("--spec", required=True)
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
        help="registry directory the pusher writes: a volume mounted into the pods",
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
    comp.set_defaults(func=cmd_compile)
    sched = sub.add_parser("schedule", help="create a recurring run on Kubeflow Pipelines")
    sched.add_argument("target", choices=["kubeflow"])
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
    sched.set_defaults(func=cmd_schedule)
    val = sub.add_parser("validate", help="load and validate a spec")
    val.add_argument("--spec", required=True)
    val.set_defaults(func=cmd_validate)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

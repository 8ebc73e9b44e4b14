"""`mimo`: the command line. It loads the spec and dispatches to a runner; nothing else.

mimo run --spec data/movies/movies.yaml --output runs        # the local pipeline
mimo compare --spec SPEC --output runs [--seeds 3]            # multi vs single-head vs trees
mimo compile kubeflow --spec SPEC --beam-runner dataflow ...  # a KFP v2 pipeline spec
mimo compile airflow --spec SPEC --output dags/x_dag.py       # an Airflow DAG file
mimo schedule kubeflow --host URL --cron '0 0 3 * * *' ...    # a recurring run on KFP
mimo validate --spec SPEC                                     # check a spec, run nothing
mimo models list|show|rollback|gc [NAME] [VERSION]            # the registry
mimo monitor --model NAME --requests PATH [--version V]       # skew and prediction drift
mimo schema                                                   # the spec's JSON Schema
mimo options [NAME]                                           # every option, its default and doc
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from pipeline import env as _env  # noqa: F401  (before TensorFlow)


def _load(path: str):
    from pipeline.spec import SpecError, load_spec

    try:
        return load_spec(path)
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return None


def _runner_command(command):
    def run(args) -> int:
        spec = None
        if command.needs_spec:
            spec = _load(args.spec)
            if spec is None:
                return 2
        return command.execute(spec, args)

    return run


def find_run_report(output: str) -> str | None:
    """The newest report.html of the runs under `output` (a `mimo run --output` folder, a
    pipeline root, or a report's own folder)."""
    import glob

    from pipeline.constants import REPORT_FILE

    found = []
    for pattern in (
        (REPORT_FILE,),  # a report's own folder
        ("RunReport", "report", "*", REPORT_FILE),  # a pipeline root
        ("pipelines", "*", "RunReport", "report", "*", REPORT_FILE),  # `--output` (run_paths)
    ):
        found += glob.glob(os.path.join(output, *pattern))
    return max(found, key=os.path.getmtime) if found else None


def cmd_report(args) -> int:
    """Prints where a run's (or a published version's) report.html is; opens nothing."""
    from pipeline.constants import REPORT_FILE

    if args.model:
        from components.registry import RegistryError, open_registry

        registry = open_registry(args.registry)
        try:
            version = registry.version(args.model, args.version)
        except RegistryError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        path = registry.version_file(args.model, version, REPORT_FILE)
        if path is None:
            print(
                f"error: {args.model} version {version} has no {REPORT_FILE} "
                f"({registry.path(args.model, version)})",
                file=sys.stderr,
            )
            return 2
        print(path)
        return 0
    path = find_run_report(args.run)
    if path is None:
        print(
            f"error: no run report under {os.path.abspath(args.run)} (a run writes one after "
            "its Evaluator; `mimo run --output DIR` puts it under DIR)",
            file=sys.stderr,
        )
        return 2
    print(os.path.abspath(path))
    return 0


def cmd_models(args) -> int:
    from components.registry import RegistryError, open_registry
    from pipeline.evaluation.report import print_card, print_models

    registry = open_registry(args.registry)  # a folder, or gs://... as a Kubeflow pusher writes
    if not registry.exists():
        print(
            f"error: no registry at {registry.root} (the folder does not exist); a run publishes "
            "into OUTPUT/registry unless given --registry",
            file=sys.stderr,
        )
        return 2
    names = [args.name] if args.name else registry.models()
    try:
        if args.action == "gc":
            return _gc(registry, names)
        for name in names:
            for d in registry.damaged(name):
                print(
                    f"warning: {d.path}: {d.reason}; not a version (`mimo models gc {name}` "
                    "moves it aside)",
                    file=sys.stderr,
                )
        if args.action == "list":
            if not names:
                print(f"no model in {registry.root}")
            for name in names:
                print_models(registry, name)
            return 0
        name = args.name or _only_model(registry)
        if args.action == "show":
            print_card(registry, name, args.version or registry.latest(name))
            return 0
        if args.version is None:
            raise RegistryError(
                f"rollback needs the version to re-publish: mimo models rollback {name} N"
            )
        version = registry.rollback(name, args.version)
        print(
            f"{name}: version {args.version} re-published as version {version}, "
            "now the one TF Serving serves"
        )
    except RegistryError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _only_model(registry) -> str:
    from components.registry import RegistryError

    models = registry.models()
    if len(models) != 1:
        raise RegistryError(
            f"{registry.root} holds {len(models)} models ({', '.join(models) or 'none'}); name one"
        )
    return models[0]


def _gc(registry, names) -> int:
    cleaned = 0
    for name in names:
        for damaged, moved_to in registry.gc(name):
            cleaned += 1
            where = f"moved to {moved_to}" if moved_to else "deleted"
            print(f"{damaged.path}: {damaged.reason}; {where}")
    if not cleaned:
        print(f"nothing to clean in {registry.root}: every version folder is complete")
    return 0


def cmd_validate(args) -> int:
    spec = _load(args.spec)
    if spec is None:
        return 2
    print(
        f"{args.spec}: OK ({len(spec.inputs)} inputs, {len(spec.outputs)} heads, "
        f"{len(spec.slices)} slices)"
    )
    return 0


def cmd_monitor(args) -> int:
    # Its answer is the table or one error line: TensorFlow's start-up lines (CUDA plugins
    # registered twice) stay off the terminal.
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    from pipeline.monitoring.monitor import run

    return run(args)


def cmd_schema(args) -> int:
    import json

    from pipeline.schema import spec_json_schema

    text = json.dumps(spec_json_schema(), indent=2) + "\n"
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
        print(f"Wrote the spec's JSON Schema to {os.path.abspath(args.output)}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_options(args) -> int:
    from pipeline.schema import options_markdown

    try:
        print(options_markdown(args.name))
    except KeyError as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 2
    return 0


# Commands that need no runner: their parser skips importing the orchestrators.
OWN_COMMANDS = ("models", "validate", "schema", "options", "report", "monitor")


def build_parser(with_runners: bool = True) -> argparse.ArgumentParser:
    from pipeline.runners import DEFAULT_RUNNER, runners

    parser = argparse.ArgumentParser(prog="mimo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    verbs: dict[str, dict] = {}
    for runner in runners().values() if with_runners else ():
        for verb, command in runner.commands().items():
            verbs.setdefault(verb, {})[runner.name] = command
    for verb, by_runner in verbs.items():
        if list(by_runner) == [DEFAULT_RUNNER]:  # `mimo run`: no target to name
            targets = {None: (sub, verb)}
        else:
            group = sub.add_parser(verb, help=f"{verb} for an orchestrator")
            choices = group.add_subparsers(dest="target", required=True)
            targets = {name: (choices, name) for name in by_runner}
        for name, (subparsers, label) in targets.items():
            command = by_runner[name or DEFAULT_RUNNER]
            p = subparsers.add_parser(label, help=command.help)
            if command.needs_spec:
                p.add_argument("--spec", required=True, help="the dataset spec (YAML)")
            command.add_arguments(p)
            p.set_defaults(func=_runner_command(command))

    models = sub.add_parser("models", help="the registry: list, show, rollback, gc")
    models.add_argument(
        "action",
        choices=["list", "show", "rollback", "gc"],
        help="gc moves damaged version folders aside and deletes unfinished publishes",
    )
    models.add_argument("name", nargs="?", help="model name (the spec's name)")
    models.add_argument("version", nargs="?", type=int)
    models.add_argument("--registry", default=os.path.join("runs", "registry"))
    models.set_defaults(func=cmd_models)
    report = sub.add_parser("report", help="where a run's or a version's report.html is")
    report.add_argument("--run", default="runs", help="a run's output folder (default: runs)")
    report.add_argument("--model", help="a published model's name (the spec's name)")
    report.add_argument("--version", type=int, help="its version (default: the newest)")
    report.add_argument("--registry", default=os.path.join("runs", "registry"))
    report.set_defaults(func=cmd_report)
    mon = sub.add_parser(
        "monitor", help="served requests against a published version: skew, prediction drift"
    )
    mon.add_argument("--model", required=True, help="the published model's name")
    mon.add_argument(
        "--requests",
        required=True,
        help="TF Serving's PredictionLog TFRecord, "
        "a TFRecord of tf.Examples, a CSV or JSON lines of raw rows",
    )
    mon.add_argument("--version", type=int, help="the version that answered (default: newest)")
    mon.add_argument("--registry", default=os.path.join("runs", "registry"))
    mon.add_argument("--json", help="where to write the JSON (default: beside the requests)")
    mon.set_defaults(func=cmd_monitor)
    val = sub.add_parser("validate", help="load and validate a spec")
    val.add_argument("--spec", required=True)
    val.set_defaults(func=cmd_validate)
    schema = sub.add_parser("schema", help="the spec's JSON Schema (for editors)")
    schema.add_argument("--output", help="write it to this file instead of stdout")
    schema.set_defaults(func=cmd_schema)
    options = sub.add_parser("options", help="every option: default, accepted values, doc")
    options.add_argument("name", nargs="?", help="a modality, head type or section")
    options.set_defaults(func=cmd_options)
    return parser


# Commands that run a pipeline: unless --verbose, TF/CUDA/Beam output goes to a log file.
LOGGED_COMMANDS = ("run", "compare")


def _run_flags(argv: list[str]) -> argparse.Namespace | None:
    """--spec, --output and --verbose of a logged command, read before the full parser (which
    imports the orchestrators); None for other commands and for --help."""
    if not argv or argv[0] not in LOGGED_COMMANDS or "-h" in argv or "--help" in argv:
        return None
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--spec")
    pre.add_argument("--output", default="runs")
    pre.add_argument("--verbose", action="store_true")
    return pre.parse_known_args(argv[1:])[0]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    with_runners = not (argv and argv[0] in OWN_COMMANDS)
    flags = _run_flags(argv)
    if flags is None or flags.verbose:
        return _main(argv, with_runners, flags)
    from pipeline.console import quiet

    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_path = os.path.join(
        os.path.abspath(flags.output), "logs", f"{argv[0]}-{stamp}-{os.getpid()}.log"
    )
    try:
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
    except OSError as e:
        print(f"error: cannot write the run's log under {flags.output}: {e}", file=sys.stderr)
        return 2
    with quiet(log_path):  # from before TensorFlow loads: its start-up lines go to the log too
        return _main(argv, with_runners, flags)


def _main(argv: list[str], with_runners: bool, flags) -> int:
    # A spec that does not load is answered before the orchestrators, TFX and Beam are
    # imported (4 s instead of 13 on this machine).
    if flags is not None and flags.spec is not None and _load(flags.spec) is None:
        return 2
    args = build_parser(with_runners).parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

"""Beam arguments per runner. The data components (ExampleGen, StatisticsGen, Transform,
Evaluator) run on whichever Beam runner these select; every orchestrator takes the same choices.

- direct:   Beam's DirectRunner on this machine (in_memory: one process; multi_processing: one
            worker per core). For data that fits on one machine.
- portable: any runner behind Beam's Job API: a Flink or Spark job server (Beam's
            flink/spark job-server images or the Flink operator), or Beam's local job service.
- dataflow: Google Cloud Dataflow (runner v2), workers started from the pipeline image.
"""

from __future__ import annotations

from dataclasses import dataclass

RUNNERS = ("direct", "portable", "dataflow")
ENVIRONMENTS = ("DOCKER", "EXTERNAL", "PROCESS", "LOOPBACK")
DIRECT_DEFAULTS = ("in_memory", 1)  # the DirectRunner's running mode and workers when not given


class BeamArgsError(ValueError):
    pass


@dataclass(frozen=True)
class BeamOptions:
    runner: str = "direct"
    direct_mode: str = "in_memory"  # in_memory | multi_processing | multi_threading
    workers: int = 1  # direct: worker processes; dataflow: maximum workers (0 = service default)
    job_endpoint: str = ""  # portable: host:port of the job server
    environment_type: str = "DOCKER"  # portable: how the job server starts Python SDK workers
    environment_config: str = ""  # portable: the SDK image (DOCKER) or worker pool (EXTERNAL)
    project: str = ""  # dataflow
    region: str = ""  # dataflow
    temp_location: str = ""  # dataflow: gs:// bucket path for staging and temp files
    image: str = ""  # dataflow: SDK container image (the pipeline image)


def beam_args(options: BeamOptions) -> list[str]:
    """The Beam pipeline arguments for `options`; raises BeamArgsError naming what is missing."""
    o = options
    if o.runner == "direct":
        if o.direct_mode not in ("in_memory", "multi_processing", "multi_threading"):
            raise BeamArgsError(f"unknown direct running mode {o.direct_mode!r}")
        if (o.direct_mode, o.workers) == DIRECT_DEFAULTS:
            # Beam's own defaults, left implicit: TFX builds and stages an sdist of itself before
            # every Beam component that has any argument (2 s each), which no DirectRunner reads.
            return []
        return [f"--direct_running_mode={o.direct_mode}", f"--direct_num_workers={o.workers}"]
    if o.runner == "portable":
        if not o.job_endpoint:
            raise BeamArgsError(
                "the portable runner needs --job-endpoint host:port (a Flink or Spark job server)"
            )
        if o.environment_type not in ENVIRONMENTS:
            raise BeamArgsError(
                f"unknown environment type {o.environment_type!r}; one of {', '.join(ENVIRONMENTS)}"
            )
        args = [
            "--runner=PortableRunner",
            f"--job_endpoint={o.job_endpoint}",
            f"--environment_type={o.environment_type}",
        ]
        if o.environment_type in ("DOCKER", "EXTERNAL"):
            if not o.environment_config:
                raise BeamArgsError(
                    f"environment type {o.environment_type} needs --environment-config "
                    "(the SDK image for DOCKER, the worker pool's host:port for EXTERNAL)"
                )
            args.append(f"--environment_config={o.environment_config}")
        return args
    if o.runner == "dataflow":
        missing = [n for n in ("project", "region", "temp_location") if not getattr(o, n)]
        if missing:
            raise BeamArgsError(
                "the Dataflow runner needs "
                + ", ".join("--" + m.replace("_", "-") for m in missing)
            )
        if not o.temp_location.startswith("gs://"):
            raise BeamArgsError("--temp-location must be a gs:// path for Dataflow")
        args = [
            "--runner=DataflowRunner",
            f"--project={o.project}",
            f"--region={o.region}",
            f"--temp_location={o.temp_location}",
            "--experiments=use_runner_v2",
        ]
        if o.image:
            args += [f"--sdk_container_image={o.image}", "--sdk_location=container"]
        if o.workers > 1:
            args.append(f"--max_num_workers={o.workers}")
        return args
    raise BeamArgsError(f"unknown Beam runner {o.runner!r}; one of {', '.join(RUNNERS)}")


def check_beam_args(args: list[str]) -> None:
    """Beam's own parse of the arguments, its usage text reduced to the line that says what is
    wrong (raised as BeamArgsError), so a typo stops the run before its first component."""
    import contextlib
    import io

    from apache_beam.options.pipeline_options import PipelineOptions

    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            PipelineOptions(list(args)).get_all_options()
    except SystemExit:
        errors = [
            line.split("error: ", 1)[1]
            for line in said.getvalue().splitlines()
            if "error: " in line
        ]
        raise BeamArgsError(
            f"Beam refuses its arguments ({' '.join(args)}): {errors[-1] if errors else said.getvalue()}"
        ) from None


def add_beam_flags(parser, required: bool = False) -> None:
    """The same --beam-* flags on every command that builds a pipeline."""
    g = parser.add_argument_group("Beam (ExampleGen, StatisticsGen, Transform, Evaluator)")
    g.add_argument(
        "--beam-runner",
        choices=RUNNERS,
        required=required,
        default=None if required else "direct",
        help="direct: this machine; portable: a Flink/Spark job server; dataflow: Google Cloud",
    )
    g.add_argument(
        "--direct-mode",
        default="in_memory",
        choices=["in_memory", "multi_processing", "multi_threading"],
        help="direct runner: in_memory (one process, default) or one process per worker",
    )
    g.add_argument("--beam-workers", type=int, default=1, help="direct workers / Dataflow max")
    g.add_argument("--job-endpoint", default="", help="portable: the job server's host:port")
    g.add_argument("--environment-type", default="DOCKER", choices=ENVIRONMENTS)
    g.add_argument("--environment-config", default="", help="portable: SDK image or pool")
    g.add_argument("--project", default="", help="dataflow: GCP project")
    g.add_argument("--region", default="", help="dataflow: region")
    g.add_argument("--temp-location", default="", help="dataflow: gs:// temp path")


def options_from_flags(args, image: str = "") -> BeamOptions:
    return BeamOptions(
        runner=args.beam_runner,
        direct_mode=args.direct_mode,
        workers=args.beam_workers,
        job_endpoint=args.job_endpoint,
        environment_type=args.environment_type,
        environment_config=args.environment_config or image,
        project=args.project,
        region=args.region,
        temp_location=args.temp_location,
        image=image,
    )

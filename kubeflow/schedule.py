"""Recurring runs of a compiled pipeline on a Kubeflow Pipelines endpoint (KFP SDK client)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.cron import is_cron


class ScheduleError(ValueError):
    pass


def check_cron(expression: str) -> str:
    """KFP's scheduler (robfig/cron) takes 6 fields: second minute hour day-of-month month
    day-of-week. A classic 5-field expression gets '0' seconds prepended."""
    fields = expression.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if not is_cron(" ".join(fields), 6):
        raise ScheduleError(
            f"cron expression {expression!r}: expected 6 fields (second minute hour "
            "day-of-month month day-of-week), e.g. '0 0 3 * * *' for 03:00 daily"
        )
    return " ".join(fields)


def parse_params(items: list[str]) -> dict[str, str]:
    params = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ScheduleError(f"--param {item!r}: expected NAME=VALUE")
        params[name] = value
    return params


@dataclass
class RecurringRun:
    host: str  # the KFP API endpoint, e.g. http://localhost:8080 (port-forwarded ml-pipeline-ui)
    package: str  # the compiled pipeline (mimo compile kubeflow)
    cron: str
    name: str
    experiment: str = "mimo"
    pipeline_root: str = ""  # where artifacts go; KFP's default root when empty
    params: dict = field(default_factory=dict)  # run-time parameters (data_root, train_args)
    max_concurrency: int = 1
    namespace: str | None = None  # multi-user Kubeflow: the profile namespace
    start_date: str | None = None  # the spec's schedule.start_date (a fixed past date)
    catchup: bool = False  # the spec's schedule.catchup


def create_recurring_run(run: RecurringRun):
    """Creates (or finds) the experiment and a recurring run of the package on `run.cron`."""
    import kfp

    cron = check_cron(run.cron)
    client = kfp.Client(host=run.host, namespace=run.namespace)
    experiment = client.create_experiment(run.experiment, namespace=run.namespace)
    return client.create_recurring_run(
        experiment_id=experiment.experiment_id,
        job_name=run.name,
        cron_expression=cron,
        start_time=f"{run.start_date}T00:00:00Z" if run.start_date else None,
        max_concurrency=run.max_concurrency,
        no_catchup=not run.catchup,
        params=run.params,
        pipeline_package_path=run.package,
        pipeline_root=run.pipeline_root or None,
        enable_caching=True,
    )

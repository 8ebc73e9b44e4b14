"""Cron syntax, shared by the spec's `schedule:` (Airflow: 5 fields or an @preset) and Kubeflow's
recurring runs (KFP: 6 fields, seconds first). Parsed by croniter, as Airflow itself does."""

from __future__ import annotations

from croniter import croniter


def is_cron(expression: str, fields: int = 5) -> bool:
    """True when `expression` is a valid cron expression of `fields` fields (6: seconds first);
    with 5 fields, Airflow's presets (@daily, @hourly, ...) are accepted too."""
    if not isinstance(expression, str):
        return False
    if fields == 5 and expression.startswith("@"):
        return croniter.is_valid(expression)
    if len(expression.split()) != fields:
        return False
    return croniter.is_valid(expression, second_at_beginning=fields == 6)

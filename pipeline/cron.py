"""Cron syntax, shared by the spec's `schedule:` (Airflow: 5 fields) and Kubeflow's recurring runs
(KFP: 6 fields, seconds first)."""

from __future__ import annotations

import re

_FIELD = re.compile(r"^[\d*?/,\-A-Za-z#LW]+$")


def has_cron_fields(expression: str, count: int) -> bool:
    """True when `expression` is `count` space-separated fields of cron syntax."""
    fields = expression.split()
    return len(fields) == count and all(_FIELD.match(f) for f in fields)

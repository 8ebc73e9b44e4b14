"""Runners: one module per orchestrator, each behind the one `Runner` interface.

A runner says which commands it serves (`mimo run`, `mimo compile <runner>`, `mimo schedule
<runner>`), how each adds its arguments and how it executes. Every runner builds its pipeline
with the one `create_pipeline`; `mimo` only loads the spec and dispatches. Adding an
orchestrator means adding one module that registers a `Runner` and listing it in RUNNER_MODULES.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

# Modules that register a runner (kubeflow/ sits at the top level beside pipeline/).
RUNNER_MODULES = ("pipeline.runners.local", "pipeline.runners.airflow", "kubeflow.runner")
DEFAULT_RUNNER = "local"  # `mimo run` without a target


@dataclass(frozen=True)
class Command:
    """One verb of a runner: its help line, its arguments and what it does with the spec."""

    help: str
    add_arguments: Callable  # (argparse parser) -> None
    execute: Callable  # (spec, parsed args) -> exit code
    needs_spec: bool = True  # the CLI loads and validates --spec before execute


class Runner:
    name: ClassVar[str]
    doc: ClassVar[str] = ""

    def commands(self) -> dict[str, Command]:
        """{verb: Command} for the verbs this runner serves (run, compile, schedule)."""
        raise NotImplementedError


_RUNNERS: dict[str, Runner] = {}


def register(runner: Runner) -> Runner:
    _RUNNERS[runner.name] = runner
    return runner


def runners() -> dict[str, Runner]:
    for module in RUNNER_MODULES:
        importlib.import_module(module)
    return dict(_RUNNERS)

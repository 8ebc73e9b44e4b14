"""Fingerprints of the code that shapes each artifact, for caching and model cards.

The ExampleGen, Transform and Trainer components name their code by module path (not a module file), so
TFX cannot fingerprint it: each gets the digest of the code its executor imports from this
project in its custom_config, so a change to that code invalidates its cached executions (as a
spec change does) while editing anything else (the CLI, the reports, a runner) re-runs nothing.
tests/test_version.py checks that each list covers every project module its entry point imports.
"""

from __future__ import annotations

import functools
import hashlib
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What `preprocessing.transform.preprocessing_fn` imports from the project (files or folders).
TRANSFORM_CODE = (
    "pipeline/__init__.py",
    "pipeline/env.py",
    "pipeline/constants.py",
    "pipeline/cron.py",
    "pipeline/spec.py",
    "preprocessing",
)
# What `trainer.task.run_fn` imports: the transform's code, the trainer, the report's file name and
# the model contract its export records.
TRAINER_CODE = (
    *TRANSFORM_CODE,
    "components/__init__.py",
    "components/contract.py",
    "trainer",
)
# What the boosted baseline's run_fn (trainer.gbdt.run_fn) imports: the trainer's code.
BOOSTED_CODE = TRAINER_CODE

# Everything the project runs: what decides a pipeline's steps (an Airflow plan's key).
ALL_CODE = ("pipeline", "components", "kubeflow", "preprocessing", "trainer")

# What ExampleGen's executor (components.csv_example_gen.Executor) imports from the project.
EXAMPLE_GEN_CODE = (
    "pipeline/__init__.py",
    "pipeline/env.py",
    "pipeline/constants.py",
    "components/__init__.py",
    "components/errors.py",
    "components/csv_example_gen.py",
)


def _files(path: str) -> list[str]:
    full = os.path.join(ROOT, path)
    if os.path.isfile(full):
        return [path]
    found = []
    for folder, dirs, names in os.walk(full):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(names):
            if name.endswith(".py"):
                found.append(os.path.relpath(os.path.join(folder, name), ROOT))
    return found


def covered_files(paths) -> list[str]:
    return sorted({f for p in paths for f in _files(p)})


@functools.cache
def code_fingerprint(paths: tuple[str, ...] = TRAINER_CODE) -> str:
    """A digest of the files under `paths` (relative to the repository), names included."""
    digest = hashlib.sha256()
    for rel in covered_files(paths):
        digest.update(rel.replace(os.sep, "/").encode())
        with open(os.path.join(ROOT, rel), "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:16]

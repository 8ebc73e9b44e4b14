"""Per-component code fingerprints: each covers exactly the project code its entry point imports."""

import os
import subprocess
import sys

import pytest
from conftest import REPO

from pipeline.version import (
    EXAMPLE_GEN_CODE,
    TRAINER_CODE,
    TRANSFORM_CODE,
    code_fingerprint,
    covered_files,
)

IMPORTED = """
import sys, os
import {module}
root = {root!r}
for m in list(sys.modules.values()):
    f = getattr(m, "__file__", None) or ""
    if f.startswith(root + os.sep) and "/.venv/" not in f and "/tests/" not in f:
        print("FILE " + os.path.relpath(f, root))
"""


def imported_files(module: str) -> set[str]:
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
    out = subprocess.run(
        [sys.executable, "-c", IMPORTED.format(module=module, root=REPO)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    return {line[5:] for line in out.splitlines() if line.startswith("FILE ")}


@pytest.mark.parametrize(
    "module, paths",
    [
        ("components.csv_example_gen", EXAMPLE_GEN_CODE),
        ("preprocessing.transform", TRANSFORM_CODE),
        ("trainer.task", TRAINER_CODE),
    ],
)
def test_each_fingerprint_covers_what_its_entry_point_imports(module, paths):
    imported = imported_files(module)
    assert f"{module.replace('.', '/')}.py" in imported
    missing = imported - set(covered_files(paths))
    assert not missing, f"{module} imports code its fingerprint misses: {sorted(missing)}"


def test_the_cli_reports_and_runners_are_in_no_fingerprint():
    for paths in (EXAMPLE_GEN_CODE, TRANSFORM_CODE, TRAINER_CODE):
        files = covered_files(paths)
        assert "pipeline/cli.py" not in files
        assert not any(f.startswith(("pipeline/evaluation/", "pipeline/runners/")) for f in files)
    assert set(covered_files(TRANSFORM_CODE)) < set(covered_files(TRAINER_CODE))
    assert code_fingerprint(TRANSFORM_CODE) != code_fingerprint(TRAINER_CODE)

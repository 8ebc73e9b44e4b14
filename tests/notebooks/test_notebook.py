"""The walkthrough notebook, executed headless on the fixture: every cell must run."""

import os

import nbformat
import pytest
from conftest import MOVIES_FIXTURE_SPEC, REPO
from nbclient import NotebookClient

NOTEBOOK = os.path.join(REPO, "notebooks", "pipeline_walkthrough.ipynb")

# The notebook runs the whole pipeline: skipped by `make test-fast`.
pytestmark = pytest.mark.e2e


def _text(cell):
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def test_notebook_runs_every_step_and_shows_each_result(tmp_path, monkeypatch):
    monkeypatch.setenv("MIMO_SPEC", MOVIES_FIXTURE_SPEC)
    monkeypatch.setenv("MIMO_OUTPUT", str(tmp_path / "out"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # Raises CellExecutionError (with the cell and its traceback) if any cell fails.
    NotebookClient(
        nb,
        timeout=1200,
        kernel_name="python3",
        resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}},
    ).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    outputs = "\n".join(_text(c) for c in code)
    kinds = {k for c in code for o in c.outputs for k in o.get("data", {})}
    assert "image/png" in kinds  # the training curves
    assert "text/html" in kinds  # statistics (Facets), schema, anomalies
    assert "validation loss per epoch" in outputs
    assert "meter_label" in outputs and "genre_label" in outputs  # a transformed example
    assert "Evaluation (eval split; gates from the spec)" in outputs
    assert "slice_mpaa=" in outputs and "slice_decade=" in outputs  # per slice
    assert "registry versions: [1]" in outputs  # the fixture's lenient gates bless it
    assert "report: " in outputs  # the run report, shown inline
    # The published version carries the run's report beside its model card.
    assert os.path.isfile(tmp_path / "out" / "registry" / "movies_fixture" / "1" / "report.html")

"""The evaluation summary's gate table, weakest slices and headline, and the printed report."""

import pytest
from conftest import MOVIES_FIXTURE_SPEC
from helpers import card_evaluation

from pipeline.evaluation.report import print_evaluation
from pipeline.evaluation.summary import EvaluationSummary
from pipeline.spec import load_spec


@pytest.fixture(scope="module")
def spec():
    import dataclasses

    from pipeline.spec import Gate

    spec = load_spec(MOVIES_FIXTURE_SPEC)
    oscar = dataclasses.replace(spec.outputs[1], gates=(Gate("auc", min=0.8),))
    return dataclasses.replace(spec, outputs=(spec.outputs[0], oscar, spec.outputs[2]))


def test_round_trip_through_the_model_card():
    summary = EvaluationSummary.from_dict(card_evaluation())
    assert EvaluationSummary.from_dict(summary.to_dict()) == summary
    assert summary.to_dict() == card_evaluation()


def test_gate_rows_show_value_threshold_baseline_and_why(spec):
    rows = {r.head: r for r in EvaluationSummary.from_dict(card_evaluation()).gate_rows(spec)}
    meter, oscar, genre = rows["meter"], rows["oscar"], rows["genre"]
    assert (meter.metric, meter.value, meter.baseline, meter.passed) == ("mae", 18.0, 17.5, True)
    assert meter.threshold == "<= 40.0, worse than baseline by <= 10.0"
    assert (oscar.value, oscar.passed, oscar.threshold) == (0.7, False, ">= 0.8")
    assert oscar.why == "value 0.7000 is outside lower bound 0.8"
    # A multilabel head is gated on the macro average over its labels; no baseline yet.
    assert (genre.value, genre.baseline, genre.passed) == (0.66, None, True)
    assert "(no baseline yet)" in genre.threshold


def test_weakest_slice_per_head_in_the_metric_direction(spec):
    summary = EvaluationSummary.from_dict(card_evaluation())
    weakest = {w.head: w for w in summary.weakest_slices(spec)}
    # Lower is better for MAE: the largest error of the slices with at least 10 examples.
    assert (weakest["meter"].slice, weakest["meter"].value) == ("slice_decade=1990", 25.0)
    assert weakest["meter"].overall == 18.0 and weakest["meter"].examples == 30
    # Higher is better for AUC; an AUC of 0 or 1 (one class in the slice) is skipped.
    assert (weakest["oscar"].slice, weakest["oscar"].value) == ("slice_mpaa=R", 0.62)
    assert (weakest["genre"].slice, weakest["genre"].value) == ("slice_mpaa=R", 0.61)
    assert summary.headline(spec) == "meter mae=18.0000; oscar auc=0.7000; genre auc=0.6600"


def test_printed_table_and_decision(spec, capsys):
    print_evaluation(spec, EvaluationSummary.from_dict(card_evaluation()), blessed=False)
    out = capsys.readouterr().out
    lines = out.splitlines()
    oscar_row = next(line for line in lines if line.strip().startswith("oscar"))
    assert oscar_row.split()[-1] == "FAIL" and "0.7000" in oscar_row
    meter_row = next(line for line in lines if line.strip().startswith("meter"))
    assert meter_row.split()[2:4] == ["18.0000", "17.5000"] and meter_row.split()[-1] == "pass"
    assert "slice_decade=1990" in out and "(overall 18.0000, 30 examples)" in out
    assert "NOT blessed; failing:" in out
    assert "  - oscar auc = 0.7000: value 0.7000 is outside lower bound 0.8" in out


def test_the_html_report_shows_a_failed_gate_its_reason_and_a_section_that_failed(spec):
    """report.html from a card's evaluation (no run): the verdict, the failing gate in red with
    TFMA's reason, the weakest slice, every head's section; a section that cannot be drawn says
    so and the rest of the page is still there."""
    import re

    from pipeline.evaluation.html_report import RunFacts, render

    summary = EvaluationSummary.from_dict(card_evaluation())
    facts = RunFacts(spec=spec, summary=summary, blessed=False, baseline_version=3)
    facts.training = {"heads": {"meter": "not a training report"}}  # breaks meter's section
    page = render(facts)
    assert "NOT blessed" in page
    assert re.findall(r"<section class=\"head\" id=\"head-(\w+)\">", page) == [
        "meter",
        "oscar",
        "genre",
    ]
    oscar = page[page.index('id="head-oscar"') : page.index('id="head-genre"')]
    assert '<tr class="fail"><td>auc</td><td>0.7000</td>' in oscar
    assert "value 0.7000 is outside lower bound 0.8" in oscar
    assert "Weakest slice: slice_mpaa=R" in oscar  # the one-class slice is never the weakest
    assert "published model (v3)" in oscar
    meter = page[: page.index('id="head-oscar"')]
    assert "This section could not be drawn" in meter  # and meter's gates are still there
    assert '<tr class="pass"><td>mae</td><td>18.0000</td><td>17.5000</td>' in meter
    assert "http://" not in page and "https://" not in page and "<script" not in page

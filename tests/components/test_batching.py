"""TF Serving's batching file: the rule that derives it from a latency curve, the committed values
against the bench's own curve, and the text TF Serving reads."""

import json
import os
import re

import pytest
from conftest import REPO

from components.batching import BATCHING, batching_text, derive, write_batching_file


def test_the_rule_picks_a_latency_bounded_knee_a_one_example_timeout_and_a_bounded_queue():
    # p50 ms per batch: throughput grows all the way, latency too.
    curve = {1: 2.0, 2: 2.2, 4: 2.5, 8: 3.0, 16: 4.0, 32: 6.0, 64: 11.0, 128: 21.0, 256: 42.0}
    assert derive(curve) == {
        "max_batch_size": 32,  # 64 takes 11 ms, over 4x one example's 2 ms
        "batch_timeout_micros": 2000,  # one example's p50
        "max_enqueued_batches": 16,  # 100 ms of 6 ms batches
    }
    # Within the budget (16 is out), the smallest batch near the best throughput: 4 (2.5/ms)
    # is within 10% of 8 (2.76/ms).
    flat = {1: 1.0, 2: 1.1, 4: 1.6, 8: 2.9, 16: 5.5, 32: 11.0}
    assert derive(flat)["max_batch_size"] == 4
    # A model that gains nothing from batching: no batch bigger than 1 is worth waiting for.
    assert derive({1: 1.0, 2: 2.0, 4: 4.0})["max_batch_size"] == 1
    with pytest.raises(ValueError, match="from batch size 1 up"):
        derive({2: 1.0, 4: 2.0})


def test_the_committed_values_are_what_the_rule_derives_from_the_bench_s_curve():
    with open(os.path.join(REPO, "bench", "results", "results.json")) as f:
        serving = json.load(f)["serving"]
    assert derive(serving["batching_curve_p50_ms"]) == BATCHING == serving["batching_committed"]


def test_the_file_is_batching_parameters_in_text_format(tmp_path):
    path = write_batching_file(str(tmp_path / "version"))
    assert os.path.basename(path) == "batching_parameters.txt"
    with open(path) as f:
        text = f.read()
    assert text == batching_text(BATCHING)
    fields = dict(re.findall(r"^(\w+) \{ value: (\d+) \}$", text, flags=re.M))
    assert {k: int(v) for k, v in fields.items()} == BATCHING
    body = [line for line in text.splitlines() if not line.startswith("#")]
    assert len(body) == len(fields)  # nothing else but comments

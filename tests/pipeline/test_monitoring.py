"""Drift between spans per input: TFDV's comparators on the movies fixture's real statistics, the
data gate's verdict, and (e2e) three runs of a pipeline reading daily spans."""

import os
import re

import numpy as np
import pandas as pd
import pytest
import tensorflow_data_validation as tfdv
from conftest import MOVIES_FIXTURE_CSV

from components.data_gate import check_drift
from components.registry import Registry
from pipeline.monitoring import drift
from pipeline.spec import Spec, SpecError

INPUTS = [
    {"name": "year", "column": "Year", "modality": "numeric"},
    {"name": "runtime", "column": "Runtime", "modality": "numeric"},
    {"name": "reviews", "column": "Reviews", "modality": "numeric", "scaling": "log"},
    {"name": "mpaa", "column": "MPAA", "modality": "categorical"},
    {"name": "title", "column": "Title", "modality": "text"},
]
SHIFT = 40  # minutes added to span 2's runtimes


def daily_spec(path, **monitoring):
    return {
        "name": "daily_movies",
        "data": {"path": str(path), "split": {"train": 7, "validation": 1, "eval": 2}},
        "inputs": INPUTS,
        "outputs": [
            {
                "name": "meter",
                "column": "Meter",
                "type": "regression",
                "gates": [{"metric": "mae", "max": 60.0}],
            },
            {"name": "oscar", "column": "Oscars", "type": "binary"},
        ],
        "evaluation": {"baselines": []},
        "training": {"epochs": 2, "batch_size": 32},
        "monitoring": monitoring,
    }


def spans():
    """Span 1: the fixture's even rows; span 2: its odd rows with every runtime SHIFT longer
    (other films, same kind of data: only runtime moved)."""
    frame = pd.read_csv(MOVIES_FIXTURE_CSV, dtype=str, keep_default_na=False)
    halves = {1: frame.iloc[::2].copy(), 2: frame.iloc[1::2].copy()}
    longer = pd.to_numeric(halves[2]["Runtime"], errors="coerce") + SHIFT
    halves[2]["Runtime"] = longer.map(lambda v: "" if pd.isna(v) else str(int(v)))
    return halves


def write_spans(root, which=(1, 2)):
    for span, frame in spans().items():
        if span in which:
            os.makedirs(os.path.join(root, str(span)), exist_ok=True)
            frame.to_csv(os.path.join(root, str(span), "movies.csv"), index=False)


def statistics(frame):
    columns = [i["column"] for i in INPUTS]
    frame = frame[columns].replace("", None)
    for c in ("Year", "Runtime", "Reviews"):
        frame[c] = pd.to_numeric(frame[c])
    return tfdv.generate_statistics_from_dataframe(frame)


def test_spans_in_the_data_path_follow_tfx_rules(tmp_path):
    write_spans(tmp_path / "daily")
    spec = Spec.from_dict(daily_spec(tmp_path / "daily" / "{SPAN}" / "*.csv"), check_files=True)
    assert spec.data.root == str(tmp_path / "daily")
    assert spec.data.patterns == {"single_split": "{SPAN}/*.csv"} and spec.data.spans
    assert spec.data.for_span(2).patterns == {"single_split": "2/*.csv"}
    assert Spec.from_dict(spec.to_dict()).data == spec.data
    for path, message in [
        ("{SPAN}/{YYYY}{MM}{DD}.csv", r"\{SPAN\} or a date"),
        ("{YYYY}{MM}.csv", r"a date needs all of"),
        ("{VERSION}/a.csv", r"\{VERSION\} needs \{SPAN\} or a date"),
        ("{SPAN}/{SPAN}.csv", "a placeholder appears twice"),
        ("{SPAN}/nothing*.tfrecord", "no data file matches"),
    ]:
        with pytest.raises(SpecError, match=message):
            Spec.from_dict(daily_spec(tmp_path / "daily" / path), check_files=True)


@pytest.mark.parametrize(
    "monitoring, message",
    [
        ({"inputs": {"genre": {"jensen_shannon": 0.1}}}, r"monitoring.inputs.genre: 'genre' is no"),
        ({"inputs": {"title": {"jensen_shannon": 0.1}}}, r"a text input is not compared"),
        ({"inputs": {"year": {"infinity_norm": 0.1}}}, r"year.infinity_norm: the L-infinity"),
        ({"drift": {"jensen_shannon": 1.5}}, r"monitoring.drift: jensen_shannon: must be a thr"),
        ({"drift": {"wasserstein": 0.1}}, r"'wasserstein' is no distance"),
        ({"on_drift": "fail"}, r"monitoring.on_drift: must be one of"),
    ],
)
def test_monitoring_thresholds_are_checked_against_the_inputs(tmp_path, monitoring, message):
    with pytest.raises(SpecError, match=message):
        Spec.from_dict(daily_spec(tmp_path / "movies.csv", **monitoring))


def test_drift_is_measured_per_input_and_found_on_the_shifted_input_only():
    halves = spans()
    spec = Spec.from_dict(
        daily_spec("movies.csv", inputs={"mpaa": {"infinity_norm": 0.2, "jensen_shannon": 0.1}})
    )
    old, new = statistics(halves[1]), statistics(halves[2])
    schema = tfdv.infer_schema(old)
    thresholds = drift.input_thresholds(spec)
    assert set(thresholds) == {"Year", "Runtime", "Reviews", "MPAA"}  # text is not compared
    findings = {(f.name, f.distance): f for f in drift.compare(new, old, schema, thresholds)}
    assert set(findings) == {
        ("year", "jensen_shannon"),
        ("runtime", "jensen_shannon"),
        ("reviews", "jensen_shannon"),
        ("mpaa", "jensen_shannon"),
        ("mpaa", "infinity_norm"),
    }
    runtime = findings["runtime", "jensen_shannon"]
    assert runtime.over and runtime.value > 0.3 and runtime.threshold == 0.1
    assert [k for k, f in findings.items() if f.over] == [("runtime", "jensen_shannon")]
    assert all(f.value < 0.1 for k, f in findings.items() if k[0] != "runtime")
    # What moved: the runtime's mean by about SHIFT, and the training buckets that emptied.
    mean_before, mean_after = (float(x) for x in runtime.moved.split(";")[0][5:].split(" -> "))
    assert mean_after - mean_before == pytest.approx(SHIFT, abs=3)
    assert "%" in runtime.moved.split(";")[1]
    # The same old data against itself: no distance at all.
    assert all(f.value == 0 for f in drift.compare(old, old, schema, thresholds))


def test_a_long_tailed_column_is_compared_on_deciles_not_read_as_drifted():
    """Oscars (94% zeros, a few films up to 7): one half of the same films holds the maximum.
    TFDV's ten equal-width buckets follow each half's maximum and read it as drifted; on the
    other half's deciles the two halves are alike, and TFDV measures exactly their shares."""
    frame = pd.read_csv(MOVIES_FIXTURE_CSV, dtype=str, keep_default_na=False)
    oscars = pd.to_numeric(frame["Oscars"]).sort_values()
    most, rest = oscars.index[-1], oscars.drop(oscars.index[-1]).sample(frac=1, random_state=0)
    a = pd.concat([oscars.loc[[most]], rest.iloc[: len(rest) // 2]])
    b = rest.iloc[len(rest) // 2 :]
    now, before = (
        tfdv.generate_statistics_from_dataframe(pd.DataFrame({"Oscars": x})) for x in (a, b)
    )
    schema = tfdv.infer_schema(before)
    thresholds = {"Oscars": ("oscars", {"jensen_shannon": 0.1})}
    (finding,) = drift.compare(now, before, schema, thresholds)
    assert not finding.over and finding.value < 0.01
    # What TFDV's own buckets give the same two halves: over the threshold.
    schema_copy = type(schema)()
    schema_copy.CopyFrom(schema)
    schema_copy.feature[0].drift_comparator.jensen_shannon_divergence.threshold = 0.1
    anomalies = tfdv.validate_statistics(now, schema_copy, previous_statistics=before)
    (equal_width,) = [m.value for i in anomalies.drift_skew_info for m in i.drift_measurements]
    assert equal_width > 0.2
    # The divergence is the one between the two halves' shares of the control's deciles.
    edges, p, q = drift.decile_shares(_feature(now, "Oscars"), _feature(before, "Oscars"))
    assert len(edges) == len(p) + 1 and sum(p) == pytest.approx(1) and sum(q) == pytest.approx(1)
    p, q = np.array(p), np.array(q)
    m = (p + q) / 2

    def kl(x, y):
        return float(np.sum(x[x > 0] * np.log2(x[x > 0] / y[x > 0])))

    assert finding.value == pytest.approx((kl(p, m) + kl(q, m)) / 2, rel=1e-3, abs=1e-6)
    # A real shift of the same column is still found: every film one Oscar more.
    shifted = tfdv.generate_statistics_from_dataframe(pd.DataFrame({"Oscars": a + 1}))
    (moved,) = drift.compare(shifted, before, schema, thresholds)
    assert moved.over and "<= 0" in moved.moved


def _feature(statistics_list, column):
    (feature,) = [f for f in statistics_list.datasets[0].features if f.path.step[0] == column]
    return feature


@pytest.mark.parametrize("on_drift", ["stop", "warn"])
def test_the_data_gate_stops_or_warns_naming_the_input_its_distance_and_threshold(
    tmp_path, on_drift
):
    halves = spans()
    spec = Spec.from_dict(daily_spec("movies.csv", on_drift=on_drift))
    old, new = statistics(halves[1]), statistics(halves[2])
    published = tmp_path / "baseline"
    (published / "monitoring").mkdir(parents=True)
    (published / drift.TRAIN_STATISTICS).write_bytes(old.SerializeToString())
    schema = tfdv.infer_schema(old)
    tfdv.write_schema_text(schema, str(published / drift.SCHEMA))
    errors, warnings, table = check_drift(
        spec, schema, {"train": new.datasets[0]}, str(published), {"version": 3, "span": 1}, 2
    )
    assert "against the data of the published version 3 (span 1)" in table
    (over,) = errors if on_drift == "stop" else warnings
    assert (errors if on_drift == "warn" else warnings) == []
    assert over.startswith("input 'runtime' (column 'Runtime'): drift jensen_shannon 0.")
    assert "over its threshold 0.1 (values in 188 examples against 182); moved most: mean " in over
    rows = {line.split()[1]: line.split()[-1] for line in table.splitlines()[2:]}
    assert rows == {"mpaa": "ok", "reviews": "ok", "runtime": "OVER", "year": "ok"}
    # A version pushed before monitoring carries no statistics: said, never an error.
    errors, warnings, _ = check_drift(
        spec, schema, {"train": new.datasets[0]}, str(tmp_path / "old"), {"version": 1}, 2
    )
    assert errors == [] and "carries no statistics of its training data" in warnings[0]


@pytest.fixture(scope="module")
def daily(tmp_path_factory):
    """Three runs of a pipeline reading daily spans into one output folder: span 1 (publishes
    version 1), then span 2 under `on_drift: stop`, then under `warn` (publishes version 2)."""
    import yaml
    from helpers import cli_run

    tmp = tmp_path_factory.mktemp("daily")
    root, output = tmp / "daily", tmp / "runs"
    path = root / "{SPAN}" / "*.csv"
    for on_drift in ("stop", "warn"):
        # MPAA has a value in about 19 of a span's 140 training rows: its frequencies move by
        # chance (JS 0.11 here); a threshold of its own.
        raw = daily_spec(path, on_drift=on_drift, inputs={"mpaa": {"jensen_shannon": 0.3}})
        (tmp / f"{on_drift}.yaml").write_text(yaml.safe_dump(raw))
    write_spans(root, which=(1,))
    first = cli_run(tmp / "stop.yaml", output)
    write_spans(root, which=(2,))
    stopped = cli_run(tmp / "stop.yaml", output)
    metadata = str(output / "metadata" / "daily_movies" / "metadata.db")
    from pipeline.runners.local import latest_run_outputs

    stopped_steps = set(latest_run_outputs(metadata))  # the newest run: the stopped one
    versions_after_stop = Registry(str(output / "registry")).versions("daily_movies")
    warned = cli_run(tmp / "warn.yaml", output)
    return {
        "first": first,
        "stopped": stopped,
        "stopped_steps": stopped_steps,
        "versions_after_stop": versions_after_stop,
        "warned": warned,
        "registry": Registry(str(output / "registry")),
        "root": root,
        "tmp": tmp,
    }


@pytest.mark.e2e
def test_a_new_span_is_compared_with_the_published_models_data_and_stopped_or_pushed(daily):
    """Span 1 trains and publishes version 1 with its data's statistics; span 2 (runtime
    shifted) then stops in the data gate under `on_drift: stop` (nothing transformed, trained
    or pushed), and under `warn` trains and becomes version 2, its card naming span 2."""
    first, stopped, warned, registry = (
        daily["first"],
        daily["stopped"],
        daily["warned"],
        daily["registry"],
    )
    assert first.returncode == 0, first.stderr[-3000:]
    card = registry.card("daily_movies", 1)
    assert card["data"]["span"] == 1
    version_dir = registry.path("daily_movies", 1)
    assert os.path.isfile(os.path.join(version_dir, drift.TRAIN_STATISTICS))
    assert "drift not checked: nothing published" in first.stdout

    assert stopped.returncode == 3, stopped.stderr[-3000:]
    assert "stopped before Transform (1 problem(s))" in stopped.stderr
    assert "input 'runtime' (column 'Runtime'): drift jensen_shannon" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert "Transform" not in daily["stopped_steps"]
    assert "StatisticsGen" in daily["stopped_steps"]
    assert daily["versions_after_stop"] == [1]

    assert warned.returncode == 0, warned.stderr[-3000:]
    table = warned.stdout.split("Drift of the training data (span 2) against the data of the")[1]
    assert table.startswith(" published version 1 (span 1), on_drift: warn:")
    rows = {line.split()[1]: line.split()[-1] for line in table.splitlines()[2:6]}
    assert rows == {"mpaa": "ok", "reviews": "ok", "runtime": "OVER", "year": "ok"}
    assert "warning: input 'runtime' (column 'Runtime'): drift jensen_shannon" in warned.stdout
    assert registry.versions("daily_movies") == [1, 2]
    assert registry.card("daily_movies", 2)["data"]["span"] == 2
    # The run's report has the same table, each input's row passing or failing.
    page = open(registry.version_file("daily_movies", 2, "report.html"), encoding="utf-8").read()
    drift_section = page.split("<section id='drift'><h2>Drift</h2>")[1].split("</section>")[0]
    assert "(span 2) against the data of the published version 1 (span 1)" in drift_section
    rows = drift_section.split("<tr")[2:]
    verdicts = {r.split("<td>")[1].split("</td>")[0]: r.split("<td>")[-1][:4] for r in rows}
    assert verdicts == {
        "input mpaa": "ok</",
        "input reviews": "ok</",
        "input runtime": "OVER",
        "input year": "ok</",
    }


def prediction_logs(path, records):
    """`records` as TF Serving's request log holds them: one PredictionLog per predict request
    (two examples each) of serialized tf.Examples (serving_default's `examples`)."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    with tf.io.TFRecordWriter(str(path)) as writer:
        for start in range(0, len(records), 2):
            log = prediction_log_pb2.PredictionLog()
            request = log.predict_log.request
            request.model_spec.signature_name = "serving_default"
            request.inputs["examples"].CopyFrom(tf.make_tensor_proto(records[start : start + 2]))
            writer.write(log.SerializeToString())


@pytest.mark.e2e
def test_monitor_finds_skew_on_the_shifted_input_only_and_prediction_drift(daily, tmp_path):
    """Version 2's own eval split, logged as TF Serving logs requests: its predictions are the
    eval split's (prediction drift 0 for every head), and the labels it carries score each head
    as its eval did. The same requests with every review count 100 times larger: skew on that
    input only (every other distance unchanged), and the heads' predictions drift (exit code 1).
    Bad requests: one line naming the file, the row and the column."""
    import json
    import subprocess
    import sys

    import tensorflow as tf
    from conftest import REPO

    from pipeline.monitoring.monitor import RequestError, eval_records, monitor

    registry = daily["registry"]
    card = registry.card("daily_movies", 2)
    records = eval_records(card["data"]["examples_uri"])
    prediction_logs(tmp_path / "same.tfrecord", records)
    same = monitor(registry, "daily_movies", 2, str(tmp_path / "same.tfrecord"))
    assert same.rows == same.eval_rows == len(records) > 0
    drifts = {f.name: f.value for f in same.prediction_drift}
    assert drifts == {"meter": 0.0, "oscar": 0.0}
    before = {(f.name, f.distance): f.value for f in same.skew}
    assert {name for name, _ in before} == {"year", "runtime", "reviews", "mpaa"}
    # 37 eval rows against 130 training rows: nothing reads as moved (on TFDV's equal-width
    # buckets runtime's long tail did: 0.167 over 0.1).
    assert not same.over, same.text()
    # Delayed ground truth: the labels the requests carry score each head as TFMA did on eval
    # (the same rows; AUC with Keras' 200 thresholds).
    labelled = {row["head"]: row for row in same.labelled}
    for head, column in (("meter", "Meter"), ("oscar", "Oscars")):
        carried = sum(column in tf.train.Example.FromString(r).features.feature for r in records)
        assert labelled[head]["labelled"] == carried > 0
        assert labelled[head]["served"] == pytest.approx(labelled[head]["eval"], abs=0.02)

    shifted = []
    for r in records:
        example = tf.train.Example.FromString(r)
        values = example.features.feature["Reviews"].float_list.value
        for n, v in enumerate(values):
            values[n] = v * 100
        shifted.append(example.SerializeToString())
    prediction_logs(tmp_path / "shifted.tfrecord", shifted)

    def cli(requests, *extra):
        command = ["monitor", "--model", "daily_movies", "--registry", registry.root]
        return subprocess.run(
            [sys.executable, "-m", "pipeline.cli", *command, "--requests", str(requests), *extra],
            cwd=REPO,
            env=dict(os.environ, TF_USE_LEGACY_KERAS="1"),
            capture_output=True,
            text=True,
            timeout=600,
        )

    moved = cli(tmp_path / "shifted.tfrecord", "--json", str(tmp_path / "out.json"))
    assert moved.returncode == 1, moved.stderr[-3000:]
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["version"] == 2 and report["rows"] == len(records)
    after = {(f["name"], f["distance"]): f for f in report["skew"]}
    assert after["reviews", "jensen_shannon"]["over"], after
    assert {k: f["value"] for k, f in after.items() if k[0] != "reviews"} == {
        k: v for k, v in before.items() if k[0] != "reviews"
    }
    assert any(f["over"] for f in report["prediction_drift"]), report["prediction_drift"]
    assert "input 'reviews' (column 'Reviews'): skew jensen_shannon" in moved.stdout
    assert "moved most: mean " in moved.stdout

    # Raw rows with a column missing, or a word in a number column: one line each.
    columns = [i["column"] for i in INPUTS]
    pd.DataFrame({c: ["1"] for c in columns if c != "Runtime"}).to_csv(
        tmp_path / "few.csv", index=False
    )
    bad = cli(tmp_path / "few.csv")
    assert bad.returncode == 2 and bad.stderr.count("error:") == 1, bad.stderr
    assert f"error: {tmp_path / 'few.csv'}: no column 'Runtime' (input 'runtime')" in bad.stderr
    row = {c: "1" for c in columns} | {"Runtime": "two hours"}
    (tmp_path / "rows.jsonl").write_text(json.dumps(row) + "\n")
    message = f"{tmp_path / 'rows.jsonl'} line 1: column 'Runtime' holds 'two hours': not a num"
    with pytest.raises(RequestError, match=re.escape(message)):
        monitor(registry, "daily_movies", 2, str(tmp_path / "rows.jsonl"))

"""The dataset spec: loading, defaults, round trip, and every validation error."""

import copy
import os

import pytest
import yaml
from conftest import DIGITS_FIXTURE_SPEC, MOVIES_FIXTURE_SPEC, REPO

from pipeline.spec import Spec, SpecError, load_spec
from preprocessing import MODALITIES


def write_spec(tmp_path, raw, name="bad.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.fixture
def raw_movies():
    with open(MOVIES_FIXTURE_SPEC) as f:
        raw = yaml.safe_load(f)
    # Point at the fixture data from wherever the test writes its spec.
    raw["data"]["path"] = os.path.join(REPO, "data", "movies", "fixture", "movies.csv")
    return raw


def problems_of(tmp_path, raw):
    with pytest.raises(SpecError) as info:
        load_spec(write_spec(tmp_path, raw))
    return info.value


def test_bundled_specs_load_with_defaults():
    for path in (
        os.path.join(REPO, "data", "movies", "movies.yaml"),
        MOVIES_FIXTURE_SPEC,
        os.path.join(REPO, "data", "digits", "digits.yaml"),
        DIGITS_FIXTURE_SPEC,
    ):
        spec = load_spec(path)
        assert spec.inputs and spec.outputs
    movies = load_spec(MOVIES_FIXTURE_SPEC)
    by_name = {i.name: i for i in movies.inputs}
    assert {i.modality for i in movies.inputs} == {"text", "multi_value", "numeric", "categorical"}
    # Defaults per modality fill what the spec leaves out.
    assert by_name["year"].options == {"scaling": "zscore", "missing_flag": True, "units": 8}
    assert by_name["reviews"].options["scaling"] == "log"
    assert by_name["mpaa"].options["num_oov_buckets"] == 1
    assert by_name["cast"].options["delimiter"] == ","
    heads = {o.name: o for o in movies.outputs}
    assert heads["meter"].loss == "huber" and heads["meter"].loss_weight == 1.0
    assert heads["oscar"].loss == "binary_crossentropy"  # default per head type
    assert heads["oscar"].class_weights == {"0": 1.0, "1": 3.0}
    assert heads["genre"].loss == "binary_crossentropy"
    assert len(heads["genre"].options["classes"]) == 21
    assert movies.data.hash_buckets == {"train": 7, "validation": 1, "eval": 2}
    assert movies.data.split_key == "ID"
    assert [s.name for s in movies.slices] == ["mpaa", "decade"]
    digits = load_spec(DIGITS_FIXTURE_SPEC)
    assert digits.data.format == "tfrecord"
    assert digits.inputs[0].options == {
        "height": 16,
        "width": 16,
        "channels": 1,
        "conv_filters": [16, 32],
        "units": 64,
    }
    assert {o.type for o in digits.outputs} == {"multiclass", "binary"}


def test_round_trip_through_custom_config():
    spec = load_spec(MOVIES_FIXTURE_SPEC)
    again = Spec.from_dict(copy.deepcopy(spec.to_dict()))
    assert again == spec
    assert again.fingerprint() == spec.fingerprint()


def test_every_modality_is_discovered():
    assert set(MODALITIES) == {"numeric", "categorical", "text", "multi_value", "image", "signal"}


@pytest.mark.parametrize(
    "mutate, key, fragment",
    [
        (
            lambda r: r["inputs"][0].update(modality="txt"),
            "inputs[0].modality",
            "unknown modality 'txt'",
        ),
        (
            lambda r: r["outputs"][2].update(loss="mse"),
            "outputs[2].loss",
            "'mse' is not a loss for a multilabel head",
        ),
        (
            lambda r: r["outputs"][0].update(type="ranking"),
            "outputs[0].type",
            "unknown head type 'ranking'",
        ),
        (
            lambda r: r["inputs"].append({"name": "title2", "column": "Title", "modality": "text"}),
            "inputs[11].column",
            "'Title' is listed twice",
        ),
        (
            lambda r: r["inputs"].append(
                {"name": "year", "column": "Runtime", "modality": "numeric"}
            ),
            "inputs[11].name",
            "'year' is listed twice",
        ),
        (
            lambda r: r["inputs"].append(
                {"name": "meter_in", "column": "Meter", "modality": "numeric"}
            ),
            "outputs[0].column",
            "label column 'Meter' is also an input",
        ),
        (
            lambda r: r["outputs"][1].update(loss_weight=-0.5),
            "outputs[1].loss_weight",
            "must be a number >= 0",
        ),
        (
            lambda r: r["outputs"][1].update(class_weights={0: 1.0, 1: -2}),
            "outputs[1].class_weights.1",
            "must be a number >= 0",
        ),
        (lambda r: r["data"].update(path="no_such_file.csv"), "data.path", "no data file matches"),
        (
            lambda r: r["data"].update(schema="missing_schema.pbtxt"),
            "data.schema",
            "schema file not found",
        ),
        (lambda r: r["inputs"][7].update(scaling="sqrt"), "inputs[7].scaling", "must be one of"),
        (
            lambda r: r["inputs"][7].update(buckets=3),
            "inputs[7].buckets",
            "unknown option for modality 'numeric'",
        ),
        (lambda r: r["outputs"][2].pop("classes"), "outputs[2].classes", "needs `classes`"),
        (lambda r: r["data"].update(format="parquet"), "data.format", "must be one of"),
        (lambda r: r["data"].update(split={"train": 4}), "data.split", "must map 'train', 'val"),
        (
            lambda r: r["data"].update(split={"train": 4, "eval": 1, "test": 1}),
            "data.split",
            "must map 'train', 'validation' and 'eval'",
        ),
        (
            lambda r: r["data"].update(split={"train": 4, "validation": "v.csv", "eval": 1}),
            "data.split",
            "every split as bucket counts or every one as a pattern",
        ),
        (lambda r: r.update(trainer={}), "trainer", "unknown section"),
        (
            lambda r: r["training"].update(epochs=0)
            if "training" in r
            else r.update(training={"epochs": 0}),
            "training.epochs",
            "positive integer",
        ),
        (
            lambda r: r["outputs"][0].update(gates=[{"metric": "mae"}]),
            "outputs[0].gates[0]",
            "needs at least one of",
        ),
        (
            lambda r: r["inputs"][0].update(name="has space"),
            "inputs[0].name",
            "must be an identifier",
        ),
        (lambda r: r["slices"][1].update(bucket_width=0), "slices[1].bucket_width", "> 0"),
        (
            lambda r: r.update(training={"cache_in_memory": "yes"}),
            "training.cache_in_memory",
            "true, false or auto",
        ),
        (lambda r: r.update(schedule={"cron": "daily"}), "schedule.cron", "5-field cron"),
        (lambda r: r.update(schedule={"cron": "0 3 * *"}), "schedule.cron", "5-field cron"),
        (
            lambda r: r.update(schedule={"start_date": "next monday"}),
            "schedule.start_date",
            "YYYY-MM-DD",
        ),
        (
            lambda r: r.update(schedule={"start_date": "2999-01-01"}),
            "schedule.start_date",
            "2999-01-01 is in the future",
        ),
        (lambda r: r.update(schedule={"start_date": None}), "schedule.start_date", "YYYY-MM-DD"),
        (lambda r: r.update(schedule={"catchup": "no"}), "schedule.catchup", "true or false"),
        (lambda r: r.update(schedule={"every": "day"}), "schedule.every", "unknown key"),
        (lambda r: r["data"].update(na_values="NA"), "data.na_values", "list of strings"),
        (
            lambda r: r["data"].update(column_na_values={"Year": [None]}),
            "data.column_na_values.Year",
            "quote YAML's null",
        ),
        (lambda r: r["data"].update(encoding="klingon"), "data.encoding", "not an encoding"),
        (  # an input named like a head: one Keras namespace
            lambda r: r["inputs"][0].update(name="meter"),
            "outputs[0].name",
            "output 'meter' makes the name 'meter', which input 'meter' makes too",
        ),
        (  # a numeric input's generated missing flag against a head's label feature
            lambda r: r["inputs"][7].update(name="oscar_label"),
            "outputs[1].name",
            "which input 'oscar_label' makes too",
        ),
        (
            lambda r: r["inputs"][0].update(name="slice_decade"),
            "slices[1].name",
            "slice 'decade' makes the name 'slice_decade'",
        ),
    ],
)
def test_validation_errors_name_file_and_key(tmp_path, raw_movies, mutate, key, fragment):
    mutate(raw_movies)
    error = problems_of(tmp_path, raw_movies)
    keys = [k for k, _ in error.problems]
    assert key in keys, error
    message = str(error)
    assert "bad.yaml" in message
    assert any(fragment in line and key in line for line in message.splitlines()), message


def test_missing_value_tokens_default_extend_replace_and_per_column(tmp_path, raw_movies):
    from pipeline.constants import DEFAULT_NA_VALUES

    assert load_spec(write_spec(tmp_path, raw_movies)).data.na_values == DEFAULT_NA_VALUES
    raw_movies["data"].update(
        na_values_extra=["?", "NA"], column_na_values={"Country": [""]}, encoding="latin-1"
    )
    data = load_spec(write_spec(tmp_path, raw_movies)).data
    assert data.na_values == (*DEFAULT_NA_VALUES, "?")
    assert data.column_na_values == {"Country": ("",)} and data.encoding == "iso8859-1"
    raw_movies["data"]["na_values"] = ["-999"]
    spec = load_spec(write_spec(tmp_path, raw_movies))
    assert spec.data.na_values == ("-999", "?", "NA")  # the extra tokens still added
    assert Spec.from_dict(spec.to_dict()).data == spec.data  # what components receive


def test_all_problems_reported_at_once(tmp_path, raw_movies):
    raw_movies["inputs"][0]["modality"] = "txt"
    raw_movies["outputs"][1]["loss_weight"] = -1
    raw_movies["data"]["path"] = "missing.csv"
    error = problems_of(tmp_path, raw_movies)
    assert {"inputs[0].modality", "outputs[1].loss_weight", "data.path"} <= {
        k for k, _ in error.problems
    }


def test_not_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("inputs: [unclosed\n")
    with pytest.raises(SpecError, match="broken.yaml: not valid YAML"):
        load_spec(str(bad))
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(str(tmp_path / "nope.yaml"))


def test_pre_split_files(tmp_path):
    for split in ("train", "validation", "eval"):
        (tmp_path / split).mkdir()
    (tmp_path / "train" / "a.csv").write_text("x,y\n1,2\n")
    patterns = {"train": "train/*.csv", "eval": "eval/*.csv"}
    raw = {
        "name": "presplit",
        "data": {"path": ".", "split": patterns},
        "inputs": [{"name": "x", "modality": "numeric"}],
        "outputs": [{"name": "y", "type": "regression"}],
    }
    error = problems_of(tmp_path, raw)
    # Files for validation cannot be carved from train's: the spec must name them.
    assert [k for k, _ in error.problems] == ["data.split.validation", "data.split.eval"]
    assert "early stopping and model selection use them" in error.problems[0][1]
    (tmp_path / "eval" / "b.csv").write_text("x,y\n3,4\n")
    (tmp_path / "validation" / "c.csv").write_text("x,y\n5,6\n")
    raw["data"]["split"] = {"eval": "eval/*.csv", "validation": "validation/*.csv", **patterns}
    spec = load_spec(write_spec(tmp_path, raw, "ok.yaml"))
    assert spec.data.hash_buckets is None
    assert spec.data.patterns == {
        "train": "train/*.csv",
        "validation": "validation/*.csv",
        "eval": "eval/*.csv",
    }  # in this order: ExampleGen's splits
    assert spec.data.root == str(tmp_path)


@pytest.mark.parametrize(
    "split, buckets",
    [
        (None, {"train": 8, "validation": 1, "eval": 1}),  # the default
        ({"eval": 1, "validation": 2, "train": 6}, {"train": 6, "validation": 2, "eval": 1}),
        # No validation: 1/9 of train's buckets become validation; eval keeps its share.
        ({"train": 4, "eval": 1}, {"train": 32, "validation": 4, "eval": 9}),
    ],
)
def test_hash_splits_always_have_a_validation_split(tmp_path, split, buckets):
    (tmp_path / "d.csv").write_text("x,y\n1,2\n")
    raw = {
        "name": "hashed",
        "data": {"path": "d.csv", **({"split": split} if split else {})},
        "inputs": [{"name": "x", "modality": "numeric"}],
        "outputs": [{"name": "y", "type": "regression"}],
    }
    spec = load_spec(write_spec(tmp_path, raw, "s.yaml"))
    assert spec.data.hash_buckets == buckets
    assert list(spec.data.hash_buckets) == ["train", "validation", "eval"]
    assert Spec.from_dict(spec.to_dict()).data.hash_buckets == buckets


def test_schedule_section_defaults_and_dates(tmp_path, raw_movies):
    # A fixed past start by default, never the parse day (see issue 18).
    retry = {"retries": 2, "retry_delay_minutes": 5}  # Airflow task retries
    assert load_spec(write_spec(tmp_path, raw_movies)).schedule == {
        "cron": "0 3 * * *",
        "start_date": "2025-01-01",
        "catchup": False,
        **retry,
    }
    raw_movies["schedule"] = {"cron": "@hourly", "start_date": "2026-06-01", "catchup": True}
    raw_movies["schedule"].update(retries=0, retry_delay_minutes=0.5)
    spec = load_spec(write_spec(tmp_path, raw_movies))
    assert spec.schedule == {
        "cron": "@hourly",
        "start_date": "2026-06-01",
        "catchup": True,
        "retries": 0,
        "retry_delay_minutes": 0.5,
    }
    assert Spec.from_dict(spec.to_dict()).schedule == spec.schedule
    # YAML's own dates (unquoted) are read as dates too.
    path = tmp_path / "dated.yaml"
    text = yaml.safe_dump({**raw_movies, "schedule": None}).replace(
        "schedule: null", "schedule: {cron: '30 4 * * 1-5', start_date: 2026-11-01}"
    )
    path.write_text(text)
    assert load_spec(str(path)).schedule == {
        "cron": "30 4 * * 1-5",
        "start_date": "2026-11-01",
        "catchup": False,
        **retry,
    }


def test_beats_gates_name_a_rival_the_run_trains(tmp_path, raw_movies):
    """`beats` takes a known rival, only with max_regression (its tolerance, default 0), and
    only when evaluation.baselines trains it; baselines are a list of known rivals."""
    oscar = raw_movies["outputs"][1]
    raw_movies["evaluation"] = {"baselines": ["gbdt"]}
    oscar["gates"] = [{"metric": "auc", "beats": "gbdt"}]
    spec = load_spec(write_spec(tmp_path, raw_movies))
    (gate,) = spec.outputs[1].gates
    assert (gate.beats, gate.max_regression, gate.min) == ("gbdt", 0.0, None)
    assert Spec.from_dict(spec.to_dict()).outputs[1].gates == spec.outputs[1].gates
    oscar["gates"] = [
        {"metric": "auc", "beats": "lightgbm"},
        {"metric": "auc", "beats": "gbdt", "min": 0.5},
    ]
    message = str(problems_of(tmp_path, raw_movies))
    assert "outputs[1].gates[0].beats: must be one of ['gbdt'], got 'lightgbm'" in message
    assert "outputs[1].gates[1]: a gate that beats gbdt compares with it only" in message
    raw_movies["evaluation"] = {"baselines": []}
    oscar["gates"] = [{"metric": "auc", "beats": "gbdt"}]
    message = str(problems_of(tmp_path, raw_movies))
    assert (
        "outputs[1].gates[0].beats: gbdt is not trained: add it to evaluation.baselines" in message
    )
    raw_movies["evaluation"] = {"baselines": ["gbdt", "gbdt"]}
    assert "evaluation.baselines: must be a list of distinct values" in str(
        problems_of(tmp_path, raw_movies)
    )
    del raw_movies["evaluation"]
    oscar["gates"] = [{"metric": "auc", "min": 0.5}]
    assert load_spec(write_spec(tmp_path, raw_movies)).evaluation == {"baselines": ["gbdt"]}

"""DataGate's checks on real statistics, schemas and anomalies computed by TFDV."""

import os

import pandas as pd
import pytest
import tensorflow_data_validation as tfdv
import yaml
from conftest import MOVIES_FIXTURE_CSV, MOVIES_FIXTURE_SPEC

from components.data_gate import check_data
from pipeline.spec import load_spec


def stats_schema(csv_path):
    """(statistics, inferred schema) as StatisticsGen and SchemaGen compute them."""
    frame = pd.read_csv(csv_path, keep_default_na=False, na_values=[""])
    stats_list = tfdv.generate_statistics_from_dataframe(frame)
    return stats_list.datasets[0], tfdv.infer_schema(stats_list)


@pytest.fixture(scope="module")
def good():
    spec = load_spec(MOVIES_FIXTURE_SPEC)
    stats, schema = stats_schema(MOVIES_FIXTURE_CSV)
    return spec, stats, schema


def spec_on(tmp_path, csv_name, mutate=None):
    with open(MOVIES_FIXTURE_SPEC) as f:
        raw = yaml.safe_load(f)
    raw["data"]["path"] = csv_name
    if mutate:
        mutate(raw)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_spec(str(path))


def test_clean_data_passes(good):
    spec, stats, schema = good
    errors, warnings = check_data(spec, schema, {"train": stats}, {})
    # The only note: 8 films list no genre, masked for the genre head.
    assert errors == [] and len(warnings) == 1
    assert "output 'genre' (column 'Genre') has a label in 392 of 400" in warnings[0]


def test_wrong_typed_column_named_with_file_and_lines(tmp_path):
    frame = pd.read_csv(MOVIES_FIXTURE_CSV, dtype=str, keep_default_na=False)
    frame.loc[[3, 10], "Year"] = ["nineteen-ninety", "unknown"]
    bad_csv = tmp_path / "movies.csv"
    frame.to_csv(bad_csv, index=False)
    spec = spec_on(tmp_path, "movies.csv")
    stats, schema = stats_schema(bad_csv)
    errors, _ = check_data(spec, schema, {"train": stats}, {})
    assert len(errors) == 2  # the input and the `decade` slice both read Year
    message = errors[0]
    assert str(bad_csv) in message
    assert "column 'Year'" in message and "input 'year' (numeric)" in message
    assert "holds strings, but a 'year' (numeric) needs numbers" in message
    # Line numbers count the header: row 3 of the frame is line 5 of the file.
    assert f"{bad_csv} line 5: 'nineteen-ninety'" in message
    assert f"{bad_csv} line 12: 'unknown'" in message


def test_missing_column_and_missing_labels(tmp_path):
    frame = pd.read_csv(MOVIES_FIXTURE_CSV, dtype=str, keep_default_na=False)
    frame = frame.drop(columns=["Runtime"])
    frame.loc[[0, 1, 2], "Meter"] = ""
    bad_csv = tmp_path / "movies.csv"
    frame.to_csv(bad_csv, index=False)
    spec = spec_on(tmp_path, "movies.csv", lambda r: r["outputs"][0].update(missing_label="error"))
    stats, schema = stats_schema(bad_csv)
    errors, _ = check_data(spec, schema, {"train": stats}, {})
    text = "\n".join(errors)
    assert "column 'Runtime' (input 'runtime' (numeric)) is not in the data" in text
    assert (
        "label column 'Meter' (output 'meter') is empty or missing in 3 example(s) of "
        "split 'train'"
    ) in text
    assert f"{bad_csv} line 2: ''; {bad_csv} line 3: ''; {bad_csv} line 4: ''" in text


def test_missing_labels_are_masked_and_counted_per_head(tmp_path):
    frame = pd.read_csv(MOVIES_FIXTURE_CSV, dtype=str, keep_default_na=False)
    frame.loc[:119, "Meter"] = ""  # 120 of 400 rows without a tomatometer
    frame.loc[200:, "Oscars"] = ""  # 200 without the Oscar count, other rows
    frame.to_csv(tmp_path / "movies.csv", index=False)
    spec = spec_on(tmp_path, "movies.csv")
    stats, schema = stats_schema(tmp_path / "movies.csv")
    errors, warnings = check_data(spec, schema, {"train": stats}, {})
    assert errors == []
    assert any(
        "output 'meter' (column 'Meter') has a label in 280 of 400 in 'train'; the other rows "
        "weigh 0 for this head only" in w
        for w in warnings
    ), warnings
    assert any("output 'oscar' (column 'Oscars') has a label in 200 of 400" in w for w in warnings)
    assert any("output 'genre' (column 'Genre') has a label in 392 of 400" in w for w in warnings)
    # Too few labelled rows for a head stops the run, naming the head, the column and the counts.
    spec = spec_on(tmp_path, "movies.csv", lambda r: r["outputs"][1].update(min_labelled=250))
    errors, _ = check_data(spec, schema, {"train": stats}, {})
    assert errors == [
        f"{tmp_path / 'movies.csv'}: output 'oscar' (column 'Oscars') has 200 labelled "
        "example(s) of 400 in split 'train', fewer than its min_labelled (250): it can be "
        "neither trained nor evaluated"
    ]


def test_binary_string_label_needs_positive_values(tmp_path):
    frame = pd.read_csv(MOVIES_FIXTURE_CSV, dtype=str, keep_default_na=False)
    frame["Oscars"] = ["yes" if int(v) > 0 else "no" for v in frame["Oscars"]]
    frame.to_csv(tmp_path / "movies.csv", index=False)
    spec = spec_on(tmp_path, "movies.csv")
    stats, schema = stats_schema(tmp_path / "movies.csv")
    errors, _ = check_data(spec, schema, {"train": stats}, {})
    assert any("set `positive_values`" in e and "'Oscars'" in e for e in errors)
    spec = spec_on(
        tmp_path, "movies.csv", lambda r: r["outputs"][1].update(positive_values=["yes"])
    )
    errors, _ = check_data(spec, schema, {"train": stats}, {})
    assert errors == []


def test_anomalies_against_a_curated_schema(good, tmp_path):
    spec, _, schema = good
    frame = pd.read_csv(MOVIES_FIXTURE_CSV, dtype=str, keep_default_na=False)
    frame.loc[5, "Runtime"] = "long"
    frame.loc[7, "MPAA"] = "Never-seen"
    frame.to_csv(tmp_path / "movies.csv", index=False)
    bad_stats, _ = stats_schema(tmp_path / "movies.csv")
    from tensorflow_metadata.proto.v0 import statistics_pb2

    anomalies = tfdv.validate_statistics(
        statistics_pb2.DatasetFeatureStatisticsList(datasets=[bad_stats]), schema
    )
    assert "Runtime" in anomalies.anomaly_info
    spec = spec_on(tmp_path, "movies.csv")
    errors, warnings = check_data(spec, schema, {"eval": bad_stats}, {"eval": anomalies})
    runtime = [e for e in errors if "column 'Runtime'" in e and "split 'eval'" in e]
    assert runtime, errors
    assert os.path.join(str(tmp_path), "movies.csv") in runtime[0]
    # An unseen category is what OOV buckets are for: a warning, not a stop.
    assert "MPAA" in anomalies.anomaly_info
    assert any("column 'MPAA'" in w for w in warnings)
    assert not any("column 'MPAA'" in e for e in errors)


def test_anomalies_on_names_tfdv_quotes_are_reported_by_column():
    """TFDV keys an anomaly on 'Runtime (min)' as "'Runtime (min)'" (and doubles a quote)."""
    from components.data_gate import _column_of

    names = ["Runtime (min)", "it's.x", "plain name"]
    schema = tfdv.infer_schema(
        tfdv.generate_statistics_from_dataframe(pd.DataFrame({n: [1.0, 2.0] for n in names}))
    )
    anomalies = tfdv.validate_statistics(
        tfdv.generate_statistics_from_dataframe(pd.DataFrame({n: ["a", "b"] for n in names})),
        schema,
    )
    assert "'Runtime (min)'" in anomalies.anomaly_info  # TFDV's own key
    assert sorted(_column_of(k) for k in anomalies.anomaly_info) == sorted(names)


def test_a_head_whose_eval_labels_are_all_missing_is_stopped_by_name(tmp_path):
    """Train has oscar labels, eval none (written as NA, read as missing by CsvExampleGen): the
    gate names the head, the column and the counts; the other heads pass."""
    frame = pd.read_csv(MOVIES_FIXTURE_CSV, dtype=str, keep_default_na=False)
    train, validation = frame.iloc[:250], frame.iloc[250:300]
    evaluation = frame.iloc[300:].copy()
    evaluation["Oscars"] = ""
    files = {"train": train, "validation": validation, "eval": evaluation}
    for split, part in files.items():
        part.to_csv(tmp_path / f"{split}.csv", index=False)
    spec = spec_on(
        tmp_path,
        ".",
        lambda r: (
            r["data"].update(split={split: f"{split}.csv" for split in files}),
            r["data"].pop("split_key"),
        ),
    )
    stats = {split: stats_schema(tmp_path / f"{split}.csv")[0] for split in files}
    schema = stats_schema(tmp_path / "train.csv")[1]
    errors, _ = check_data(spec, schema, stats, {})
    assert len(errors) == 1, errors
    assert errors[0].endswith(
        "output 'oscar' (column 'Oscars') has 0 labelled example(s) of 100 in split 'eval', "
        "fewer than its min_labelled (10): it can be neither trained nor evaluated"
    )


def test_multiclass_labels_outside_classes_are_counted_and_warned_or_stopped(tmp_path):
    frame = pd.read_csv(MOVIES_FIXTURE_CSV, dtype=str, keep_default_na=False)
    frame.loc[:4, "MPAA"] = "NC-17"  # 5 rows with a rating the spec does not declare
    frame.loc[5:6, "MPAA"] = "X"
    frame.to_csv(tmp_path / "movies.csv", index=False)

    def rating_head(unknown_labels):
        def mutate(raw):
            raw["inputs"] = [i for i in raw["inputs"] if i["name"] != "mpaa"]
            raw["slices"] = [s for s in raw["slices"] if s["name"] != "mpaa"]
            raw["outputs"].append(
                {
                    "name": "rating",
                    "column": "MPAA",
                    "type": "multiclass",
                    "classes": ["G", "PG", "PG-13", "R"],
                    "unknown_labels": unknown_labels,
                }
            )

        return mutate

    stats, schema = stats_schema(tmp_path / "movies.csv")
    spec = spec_on(tmp_path, "movies.csv", rating_head("mask"))
    errors, warnings = check_data(spec, schema, {"train": stats}, {})
    assert errors == []
    line = (
        "column 'MPAA' (output 'rating') has 7 label(s) outside its `classes` in split 'train': "
        "'NC-17' x5, 'X' x2; they weigh 0 for this head"
    )
    assert any(line in w for w in warnings), warnings
    spec = spec_on(tmp_path, "movies.csv", rating_head("error"))
    errors, _ = check_data(spec, schema, {"train": stats}, {})
    assert len(errors) == 1 and "'NC-17' x5, 'X' x2; add them to `classes`" in errors[0]


def test_multilabel_labels_outside_classes_are_counted_and_warned_or_stopped(tmp_path):
    frame = pd.read_csv(MOVIES_FIXTURE_CSV, dtype=str, keep_default_na=False)
    frame.loc[:2, "Genre"] = "Drama, Film-Noir"  # a genre the spec does not declare, 3 rows
    frame.loc[3, "Genre"] = "News"
    frame.to_csv(tmp_path / "movies.csv", index=False)

    def genre_head(unknown_labels):
        def mutate(raw):
            genre = next(o for o in raw["outputs"] if o["name"] == "genre")
            genre["unknown_labels"] = unknown_labels

        return mutate

    stats, schema = stats_schema(tmp_path / "movies.csv")
    spec = spec_on(tmp_path, "movies.csv", genre_head("ignore"))
    errors, warnings = check_data(spec, schema, {"train": stats}, {})
    assert errors == []
    line = (
        "column 'Genre' (output 'genre') has 4 label(s) outside its `classes` in split 'train': "
        "'Film-Noir' x3, 'News' x1; they are ignored, each row keeps its other labels"
    )
    assert any(line in w for w in warnings), warnings
    spec = spec_on(tmp_path, "movies.csv", genre_head("error"))
    errors, _ = check_data(spec, schema, {"train": stats}, {})
    assert len(errors) == 1 and "'Film-Noir' x3, 'News' x1; add them to `classes`" in errors[0]

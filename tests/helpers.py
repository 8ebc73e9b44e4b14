"""Test data shared by several test modules (tests/ is on sys.path, as for conftest)."""

import os
import subprocess
import sys

from conftest import REPO


def fake_saved_model(path, payload=b"x" * 1000, files=5):
    """A directory shaped like a SavedModel (the registry copies files, it does not load them)."""
    os.makedirs(os.path.join(path, "variables"), exist_ok=True)
    with open(os.path.join(path, "saved_model.pb"), "wb") as f:
        f.write(payload)
    for i in range(files):
        with open(os.path.join(path, "variables", f"part-{i}"), "wb") as f:
            f.write(payload)
    return str(path)


def card_evaluation():
    """An evaluation as a model card keeps it (the shape EvaluationSummary.to_dict writes)."""
    return {
        "metrics": {
            "meter": {
                "overall": {
                    "mean_absolute_error": 18.0,
                    "baseline:mean_absolute_error": 17.5,
                    "example_count": 80,
                },
                "slice_decade=1990": {"mean_absolute_error": 25.0, "example_count": 30},
                "slice_decade=2000": {"mean_absolute_error": 12.0, "example_count": 40},
                "slice_decade=1930": {"mean_absolute_error": 60.0, "example_count": 3},  # too few
            },
            "oscar": {
                "overall": {"auc": 0.7, "example_count": 80},
                "slice_mpaa=R": {"auc": 0.62, "example_count": 20},
                "slice_mpaa=G": {"auc": 0.0, "example_count": 15},  # one class: says nothing
                "slice_mpaa=PG": {"auc": 0.75, "example_count": 25},
            },
            "genre": {
                "overall": {"auc/macro": 0.66, "auc/class_0": 0.7, "example_count": 80},
                "slice_mpaa=R": {"auc/macro": 0.61, "example_count": 20},
            },
        },
        "validation": {
            "ok": False,
            "failures": [
                {
                    "head": "oscar",
                    "metric": "auc",
                    "value": 0.7,
                    "change": False,
                    "message": "value 0.7000 is outside lower bound 0.8",
                }
            ],
        },
    }


# Users' column names, as their files have them: spaces, parentheses, dots, slashes, non-ASCII
# letters, a leading digit.
MESSY_COLUMNS = {
    "Title": "Título",
    "Year": "Year (release)",
    "Runtime": "Runtime (min)",
    "Reviews": "reviews.count",
    "MPAA": "MPAA/rating",
    "Cast": "1st-billed cast",
    "Meter": "Tomato meter",
    "Oscars": "Oscars won",
    "Genre": "Genre(s)",
}
MESSY_LABELS = (("Tomato meter", 0), ("Oscars won", 1), ("Genre(s)", 2))  # row % 3 masked
NA_TOKENS = ("NA", "N/A", "null", "", "NaN", "None")


def write_messy_movies(csv_path, fixture_csv, fixture_spec):
    """The movies fixture as users' files come: awkward column names, missing values written as
    tokens (NA, N/A, null, ...) in numeric, categorical and label columns, and each head's label
    missing on a different third of the rows (row i % 3 == 0, 1, 2). Returns the spec (a dict)
    reading it; Runtime holds integers only, as in the fixture."""
    import pandas as pd
    import yaml

    frame = pd.read_csv(fixture_csv, dtype=str, keep_default_na=False)
    frame = frame.rename(columns=MESSY_COLUMNS)
    for i in range(len(frame)):
        token = NA_TOKENS[i % len(NA_TOKENS)]
        for column, part in MESSY_LABELS:
            if i % 3 == part:
                frame.loc[i, column] = token
        if i % 7 == 3:
            frame.loc[i, "Runtime (min)"] = "NA"
        if i % 11 == 5:
            frame.loc[i, "reviews.count"] = " null "
        if frame.loc[i, "MPAA/rating"] == "" and i % 2:
            frame.loc[i, "MPAA/rating"] = "N/A"
    frame.to_csv(csv_path, index=False)
    with open(fixture_spec) as f:
        raw = yaml.safe_load(f)
    raw["data"]["path"] = str(csv_path)
    for section in ("inputs", "outputs", "slices"):
        for item in raw[section]:
            column = item.get("column", item["name"])
            item["column"] = MESSY_COLUMNS.get(column, column)
    return raw


def cli_run(spec_path, output, *extra, timeout=1500, command="run"):
    """`mimo run` (or `command`) in a subprocess, as a user runs it (Beam in-process, as the
    tests' runs, unless `extra` says otherwise)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            command,
            "--spec",
            str(spec_path),
            "--output",
            str(output),
            *extra,
        ],
        cwd=REPO,
        env=dict(os.environ, TF_USE_LEGACY_KERAS="1"),
        capture_output=True,
        text=True,
        timeout=timeout,
    )

"""Test data shared by several test modules (tests/ is on sys.path, as for conftest)."""

import os


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

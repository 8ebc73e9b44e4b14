"""`mimo` commands that run no pipeline: validate, models list|show|rollback, schema, options,
compile airflow. (`mimo run` and `mimo compile kubeflow` are tested with their runners.)"""

import ast
import json
import os

import pytest
import yaml
from conftest import DIGITS_FIXTURE_SPEC, MOVIES_FIXTURE_SPEC, REPO
from helpers import card_evaluation, fake_saved_model

from components.registry import Registry
from pipeline.cli import main
from pipeline.spec import load_spec


def test_validate_ok_and_every_problem_with_file_and_key(tmp_path, capsys):
    assert main(["validate", "--spec", MOVIES_FIXTURE_SPEC]) == 0
    assert capsys.readouterr().out.strip().endswith("OK (11 inputs, 3 heads, 2 slices)")
    with open(MOVIES_FIXTURE_SPEC) as f:
        raw = yaml.safe_load(f)
    raw["data"]["path"] = os.path.join(os.path.dirname(MOVIES_FIXTURE_SPEC), "movies.csv")
    raw["inputs"][0]["modality"] = "txt"
    raw["outputs"][0]["loss_weight"] = -1
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    assert main(["validate", "--spec", str(tmp_path / "bad.yaml")]) == 2
    err = capsys.readouterr().err
    assert "2 problem(s)" in err
    assert f"{tmp_path / 'bad.yaml'}: inputs[0].modality: unknown modality 'txt'" in err
    assert "outputs[0].loss_weight: must be a number >= 0, got -1" in err


@pytest.fixture
def registry(tmp_path):
    spec = load_spec(MOVIES_FIXTURE_SPEC)
    reg = Registry(str(tmp_path / "registry"))
    model = fake_saved_model(tmp_path / "model")
    card = {"spec": spec.to_dict(), "evaluation": card_evaluation(), "baseline": {}}
    reg.publish(spec.name, model, card)
    better = card_evaluation()
    better["metrics"]["meter"]["overall"]["mean_absolute_error"] = 15.0
    reg.publish(spec.name, model, {**card, "evaluation": better, "baseline": {"version": 1}})
    return reg, spec.name


def test_models_list_show_and_rollback(registry, capsys):
    reg, name = registry
    assert main(["models", "list", "--registry", reg.root]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert f"{name} in {reg.root} (TF Serving serves the highest: 2)" in out
    v1 = next(line for line in lines if line.split()[:1] == ["1"])
    v2 = next(line for line in lines if line.split()[:1] == ["2"])
    assert "meter mae=18.0000; oscar auc=0.7000; genre auc=0.6600" in v1
    assert v2.split()[2] == "1" and "meter mae=15.0000" in v2  # compared with version 1
    assert main(["models", "show", name, "1", "--registry", reg.root]) == 0
    shown = capsys.readouterr().out
    card = json.loads(shown[: shown.index("\n(files:")])
    assert card["version"] == 1 and "spec" not in card
    assert card["evaluation"] == card_evaluation()
    assert main(["models", "rollback", name, "1", "--registry", reg.root]) == 0
    assert "version 1 re-published as version 3" in capsys.readouterr().out
    assert reg.versions(name) == [1, 2, 3] and reg.card(name, 3)["rollback_of"] == 1
    assert main(["models", "list", "--registry", reg.root]) == 0
    assert "(rollback of 1)" in capsys.readouterr().out
    assert main(["models", "show", name, "9", "--registry", reg.root]) == 2
    assert "no version 9" in capsys.readouterr().err


def test_json_schema_accepts_the_bundled_specs_and_refuses_mistakes(tmp_path, capsys):
    import jsonschema

    out = tmp_path / "mimo.schema.json"
    assert main(["schema", "--output", str(out)]) == 0
    schema = json.loads(out.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    for path in (
        MOVIES_FIXTURE_SPEC,
        DIGITS_FIXTURE_SPEC,
        os.path.join(REPO, "data", "movies", "movies.yaml"),
    ):
        with open(path) as f:
            raw = yaml.safe_load(f)
        assert not list(validator.iter_errors(raw)), path
    with open(MOVIES_FIXTURE_SPEC) as f:
        raw = yaml.safe_load(f)
    raw["inputs"][7]["scaling"] = "sqrt"  # not a numeric scaling
    raw["outputs"][0]["class_weights"] = {"0": 1}  # regression heads take none
    raw["training"]["epochs"] = 0
    assert len(list(validator.iter_errors(raw))) >= 3


def test_options_tables_come_from_the_declarations(capsys):
    assert main(["options", "numeric"]) == 0
    out = capsys.readouterr().out
    assert "| `scaling` | `zscore` | zscore, log, minmax |" in out
    assert "| `missing_flag` | `true` | true, false |" in out
    assert main(["options", "nonsense"]) == 2
    assert "no modality, head type or section 'nonsense'" in capsys.readouterr().err


def test_readme_option_tables_are_generated():
    """README's option reference is `mimo options` verbatim (regenerate with
    `python -m pipeline.schema --readme`)."""
    from pipeline.schema import README_BEGIN, README_END, options_markdown

    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    section = readme[readme.index(README_BEGIN) + len(README_BEGIN) : readme.index(README_END)]
    assert section.strip() == options_markdown().strip()


def test_compile_airflow_writes_a_dag_file_for_the_spec(tmp_path, capsys):
    dag = tmp_path / "dags" / "movies_dag.py"
    assert (
        main(
            [
                "compile",
                "airflow",
                "--spec",
                MOVIES_FIXTURE_SPEC,
                "--output",
                str(dag),
                "--runs",
                str(tmp_path / "runs"),
                "--schedule",
                "@daily",
            ]
        )
        == 0
    )
    text = dag.read_text()
    tree = ast.parse(text)
    [plan] = [
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and node.targets[0].id == "PLAN"
    ]
    assert plan["spec_path"] == MOVIES_FIXTURE_SPEC and plan["schedule"] == "@daily"
    assert plan["output_dir"] == str(tmp_path / "runs") and plan["retries"] == 2
    assert [s["id"] for s in plan["steps"]][:2] == ["CsvExampleGen", "PublishedBaseline"]
    # The file imports Airflow's side of the project only (no TensorFlow, TFX or the spec).
    imports = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    assert [(n.module, [a.name for a in n.names]) for n in imports] == [
        ("pipeline.runners.airflow_dag", ["dag_from_plan"])
    ]
    assert "schedule: @daily" in capsys.readouterr().out

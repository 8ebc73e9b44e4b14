"""create_pipeline: what each step's cache key holds, so that changing one part of a spec re-runs
only the steps that read it."""

import json

from conftest import MOVIES_FIXTURE_SPEC

from pipeline.pipeline import create_pipeline
from pipeline.spec import Spec, load_spec


def keys(spec, tmp_path) -> dict:
    """{step: its execution properties as JSON} (what TFX's cache compares, with the inputs)."""
    pipeline = create_pipeline(
        spec, str(tmp_path), registry=str(tmp_path / "registry"), retrain=False
    )
    return {
        c.id: json.dumps(
            {k: str(v) for k, v in c.exec_properties.items() if k != "run"}, sort_keys=True
        )
        for c in pipeline.components
    }


def test_training_settings_retrain_the_network_not_the_trees_and_gates_only_re_evaluate(tmp_path):
    raw = load_spec(MOVIES_FIXTURE_SPEC).to_dict()
    raw["evaluation"] = {"baselines": ["gbdt"]}
    base = keys(Spec.from_dict(raw), tmp_path)
    assert {"BoostedTrainer", "BoostedEvaluator"} <= set(base)

    raw["training"]["learning_rate"] = 0.01
    raw["model"]["dropout"] = 0.1
    changed = keys(Spec.from_dict(raw), tmp_path)
    assert changed["Trainer"] != base["Trainer"]
    for step in ("Transform", "BoostedTrainer", "Evaluator", "BoostedEvaluator"):
        assert changed[step] == base[step], step

    raw["outputs"][1]["gates"].append({"metric": "auc", "beats": "gbdt"})
    gated = keys(Spec.from_dict(raw), tmp_path)
    for step in ("Transform", "Trainer", "BoostedTrainer", "Evaluator"):
        assert gated[step] == changed[step], step
    assert gated["BoostedEvaluator"] != changed["BoostedEvaluator"]

    raw["training"]["seed"] = 7  # the trees' only training setting
    assert keys(Spec.from_dict(raw), tmp_path)["BoostedTrainer"] != gated["BoostedTrainer"]


def test_drift_thresholds_re_run_the_data_gate_only(tmp_path):
    """Monitoring settings are read by the data gate (and recorded by the pusher): Transform,
    the trainers and the Evaluators keep their cache keys."""
    raw = load_spec(MOVIES_FIXTURE_SPEC).to_dict()
    raw["evaluation"] = {"baselines": ["gbdt"]}
    base = keys(Spec.from_dict(raw), tmp_path)
    raw["monitoring"] = {"drift": {"jensen_shannon": 0.05}, "on_drift": "stop"}
    changed = keys(Spec.from_dict(raw), tmp_path)
    assert changed["DataGate"] != base["DataGate"]
    for step in ("Transform", "Trainer", "BoostedTrainer", "Evaluator", "BoostedEvaluator"):
        assert changed[step] == base[step], step


def test_tuning_puts_tfx_tuner_before_the_trainer_and_re_runs_neither_transform_nor_the_trees(
    tmp_path,
):
    raw = load_spec(MOVIES_FIXTURE_SPEC).to_dict()
    raw["evaluation"] = {"baselines": ["gbdt"]}
    base = keys(Spec.from_dict(raw), tmp_path)
    assert "Tuner" not in base
    raw["tuning"] = {"trials": 4, "space": {"model.dropout": [0.1, 0.3]}}
    spec = Spec.from_dict(raw)
    tuning = keys(spec, tmp_path)
    for step in ("Transform", "BoostedTrainer", "Evaluator", "BoostedEvaluator"):
        assert tuning[step] == base[step], step
    assert tuning["Trainer"] != base["Trainer"]
    pipeline = create_pipeline(spec, str(tmp_path), registry=str(tmp_path / "registry"))
    steps = {c.id: c for c in pipeline.components}
    tuner, trainer = steps["Tuner"], steps["Trainer"]
    # The Trainer trains with the Tuner's best values; both read the Transform's output and
    # watch the validation split.
    assert trainer.inputs["hyperparameters"] is tuner.outputs["best_hyperparameters"]
    assert tuner.inputs["examples"] is trainer.inputs["examples"]
    for step in (tuner, trainer):
        assert json.loads(step.exec_properties["eval_args"])["splits"] == ["validation"]
    assert json.loads(tuner.exec_properties["custom_config"])["spec"]["tuning"]["trials"] == 4
    assert "run" not in json.loads(tuner.exec_properties["custom_config"])  # cached

"""TFX's own Tuner executor (KerasTuner) searching the spec's options on the movies fixture's
real transformed examples, then TFX's own Trainer executor training with its best values."""

import json
import os
import shutil

import pytest
from tfx.components.trainer import executor as trainer_executor
from tfx.components.tuner import executor as tuner_executor
from tfx.dsl.components.base import base_executor
from tfx.proto import trainer_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import json_utils, proto_utils

from pipeline.constants import HYPERPARAMETERS_FILE, TRAINING_REPORT_FILE
from pipeline.spec import Spec, SpecError
from trainer.model import build_model
from trainer.tuning import (
    OBJECTIVE,
    _spec_first,
    current,
    decoded,
    hyperparameters,
    tuned,
    weighted_validation_loss,
)

SPACE = {"training.learning_rate": [0.2, 0.001], "model.trunk_units": [[128, 64], [16]]}


def _tuning_spec(spec, **tuning):
    raw = spec.to_dict()
    raw["tuning"] = {"trials": 3, "algorithm": "random", "space": SPACE, **tuning}
    raw["evaluation"] = {"baselines": []}
    raw["training"]["epochs"] = 2  # each trial is a whole training: 2 epochs of 150 rows
    raw["training"]["learning_rate"] = 0.2
    return Spec.from_dict(raw)


def test_the_search_space_is_checked_by_each_options_own_declaration(movies_fixture_spec):
    raw = movies_fixture_spec.to_dict()
    for space, message in [
        ({"training.learnin_rate": [0.1]}, "'training.learnin_rate' is no searchable option"),
        ({"training.learning_rate": [0.01, -1]}, "learning_rate: -1 must be a number > 0"),
        ({"model.fusion": ["concatenate", "mean"]}, "model.fusion: 'mean' must be one of"),
        ({"model.fusion": {"min": 1, "max": 2}}, "a range takes a number option"),
        ({"model.dropout": {"min": 0.5, "max": 0.1}}, "min must be below max"),
        ({"training.learning_rate": {"min": 0, "max": 0.1, "log": True}}, "must be a number > 0"),
        ({"model.trunk_units": [[64], [64]]}, "a value is listed twice"),
        ({"model.dropout": {"min": 0.1, "max": 0.5, "log": 1}}, "log must be true or false"),
        ({"training.seed": [1, 2]}, "'training.seed' is no searchable option"),
    ]:
        with pytest.raises(SpecError) as e:
            Spec.from_dict({**raw, "tuning": {"trials": 2, "space": space}})
        assert "tuning.space" in str(e.value) and message in str(e.value), (space, str(e.value))
    with pytest.raises(SpecError, match="tuning.trials: must be an integer >= 0"):
        Spec.from_dict({**raw, "tuning": {"trials": -1}})


def test_a_trial_spec_takes_the_trials_values_and_defaults_are_the_specs_own(
    movies_fixture_spec,
):
    spec = _tuning_spec(movies_fixture_spec)
    hp = hyperparameters(spec)
    # The first trial (the space's defaults) is the spec as written.
    assert hp.values == {"training.learning_rate": 0.2, "model.trunk_units": "[128, 64]"}
    assert tuned(spec, hp.values) == spec
    other = tuned(spec, {"training.learning_rate": 0.003, "model.trunk_units": "[16]"})
    assert other.training["learning_rate"] == 0.003 and other.model["trunk_units"] == [16]
    assert other.training["epochs"] == spec.training["epochs"]  # what the space leaves alone
    with pytest.raises(ValueError, match="not in the spec's tuning.space"):
        tuned(spec, {"model.fusion": "gated"})


@pytest.mark.parametrize(
    "space, first, other, trained",
    [
        # a number option's values are floats (KerasTuner's Choice takes one type): the spec's
        # own modality_dropout 0.1 is among [0, 0.1]
        ({"model.modality_dropout": [0, 0.1]}, 0.1, 0.0, 0.0),
        # the spec's own dropout 0.3 is not in the list: added, first
        ({"model.dropout": [0.1, 0.55]}, 0.3, 0.55, 0.55),
        # booleans travel as JSON (KerasTuner's Choice reads them as 1 and 0)
        ({"training.weight_averaging": [False]}, "true", "false", False),
        # a range holding the spec's value, and one widened down to it
        ({"model.dropout": {"min": 0.1, "max": 0.6}}, 0.3, 0.45, 0.45),
        ({"model.dropout": {"min": 0.4, "max": 0.6}}, 0.3, 0.5, 0.5),
        # an integer option's range is KerasTuner's Int, whatever the spec's value looks like
        ({"training.batch_size": {"min": 16, "max": 64}}, 32, 48, 48),
    ],
)
def test_the_first_trial_is_the_specs_own_values_whatever_the_space(
    movies_fixture_spec, space, first, other, trained
):
    spec = _tuning_spec(movies_fixture_spec, space=space)
    [key] = space
    hp = hyperparameters(spec)
    assert hp.values == {key: first}
    assert tuned(spec, hp.values) == spec  # trial 0 trains the spec as written
    assert decoded(tuned(spec, {key: other}), [key]) == {key: trained}
    assert current(tuned(spec, {key: other}), key) == trained
    assert type(current(tuned(spec, {key: other}), key)) is type(trained)
    if isinstance(space[key], dict):
        kind = type(hp.space[0]).__name__
        assert kind == ("Int" if key == "training.batch_size" else "Float")


@pytest.mark.parametrize("oracle", ["bayesian", "random"])
def test_the_oracle_starts_from_the_spec_and_never_repeats_a_trial(
    movies_fixture_spec, tmp_path, oracle
):
    """KerasTuner's own oracles (ours only sets the first trial and skips a repeat), driven as
    its Tuner drives them, on a small space of lists (8 combinations) and a made-up score."""
    import keras_tuner

    spec = _tuning_spec(
        movies_fixture_spec,
        space={
            "model.dropout": [0.1, 0.3],
            "model.trunk_units": [[128, 64], [16]],
            "training.learning_rate": [0.2, 0.01],
        },
    )
    kind = {
        "bayesian": keras_tuner.oracles.BayesianOptimizationOracle,
        "random": keras_tuner.oracles.RandomSearchOracle,
    }[oracle]
    extra = {"num_initial_points": 2} if oracle == "bayesian" else {}
    made = _spec_first(kind)(
        objective=keras_tuner.Objective(OBJECTIVE, "min"),
        max_trials=8,
        hyperparameters=hyperparameters(spec),
        tune_new_entries=False,
        seed=3,
        **extra,
    )
    made._set_project_dir(str(tmp_path), "oracle")
    seen = []
    while True:
        trial = made.create_trial("tuner0")
        if trial.status == "STOPPED":
            break
        values = dict(trial.hyperparameters.values)
        seen.append(values)
        score = values["model.dropout"] + values["training.learning_rate"]  # made up
        made.update_trial(trial.trial_id, {OBJECTIVE: score})
        trial.status = "COMPLETED"
        made.end_trial(trial)
    assert seen[0] == {
        "model.dropout": 0.3,
        "model.trunk_units": "[128, 64]",
        "training.learning_rate": 0.2,
    }
    assert len({json.dumps(v, sort_keys=True) for v in seen}) == len(seen) == 8


def _examples(prepared, folder):
    """The prepared split files as TFX's transformed Examples artifact (train, validation)."""
    examples = standard_artifacts.Examples()
    examples.uri = str(folder)
    examples.split_names = artifact_utils.encode_split_names(["train", "validation"])
    for split, path in (("train", prepared.train_files), ("validation", prepared.eval_files)):
        os.makedirs(folder / f"Split-{split}")
        shutil.copy(path, folder / f"Split-{split}" / os.path.basename(path))
    graph = standard_artifacts.TransformGraph()
    graph.uri = prepared.tft_output._transform_output_dir
    return examples, graph


def _artifact(kind, uri):
    a = kind()
    a.uri = str(uri)
    os.makedirs(a.uri, exist_ok=True)
    return a


@pytest.mark.e2e
def test_tfx_tuner_searches_the_spec_and_the_trainer_trains_its_best(movies_prepared, tmp_path):
    spec = _tuning_spec(movies_prepared.spec)
    examples, graph = _examples(movies_prepared, tmp_path / "transformed")
    properties = {
        "train_args": proto_utils.proto_to_json(trainer_pb2.TrainArgs()),
        "eval_args": proto_utils.proto_to_json(trainer_pb2.EvalArgs(splits=["validation"])),
        "custom_config": json_utils.dumps({"spec": spec.to_dict()}),
    }
    best = _artifact(standard_artifacts.HyperParameters, tmp_path / "best")
    results = _artifact(standard_artifacts.TunerResults, tmp_path / "results")
    context = base_executor.BaseExecutor.Context(tmp_dir=str(tmp_path / "tmp"), unique_id="1")
    tuner_executor.Executor(context).Do(
        {"examples": [examples], "transform_graph": [graph]},
        {"best_hyperparameters": [best], "tuner_results": [results]},
        {**properties, "tuner_fn": "trainer.tuning.tuner_fn"},
    )
    with open(tmp_path / "results" / "tuner_results.json") as f:
        trials = {t["trial_id"]: t for t in json.load(f)}
    assert len(trials) == 3  # every trial completed
    # The first trial is the spec's own values; the others differ from it and from each other.
    assert trials["0"]["training.learning_rate"] == 0.2
    assert trials["0"]["model.trunk_units"] == "[128, 64]"
    values = [tuple(t[k] for k in SPACE) for t in trials.values()]
    assert len(set(values)) == 3
    winner = min(trials.values(), key=lambda t: t["score"])
    # On this fixture (seeded) the spec's own values lose, so what follows checks that the
    # Trainer trains another trial's values, not the spec's.
    assert winner["trial_id"] != "0"
    with open(tmp_path / "best" / "best_hyperparameters.txt") as f:
        best_config = json.load(f)
    assert {k: winner[k] for k in SPACE} == {
        p["config"]["name"]: best_config["values"][p["config"]["name"]]
        for p in best_config["space"]
    }

    # TFX's Trainer with the Tuner's best values trains that trial's model again.
    model = _artifact(standard_artifacts.Model, tmp_path / "model")
    model_run = _artifact(standard_artifacts.ModelRun, tmp_path / "model_run")
    trainer_executor.GenericExecutor(context).Do(
        {"examples": [examples], "transform_graph": [graph], "hyperparameters": [best]},
        {"model": [model], "model_run": [model_run]},
        {**properties, "run_fn": "trainer.task.run_fn"},
    )
    with open(tmp_path / "model_run" / TRAINING_REPORT_FILE) as f:
        report = json.load(f)
    # Recorded as trained: the trunk as a list, not KerasTuner's JSON text of it.
    assert report["hyperparameters"] == decoded(tuned(spec, {k: winner[k] for k in SPACE}), SPACE)
    assert isinstance(report["hyperparameters"]["model.trunk_units"], list)
    # The SavedModel carries them (the registry's card and MLflow's params read them there).
    with open(tmp_path / "model" / "Format-Serving" / HYPERPARAMETERS_FILE) as f:
        assert json.load(f) == report["hyperparameters"]
    trained = tuned(spec, report["hyperparameters"])
    # The network trained has the winner's trunk (its size, built here from the tuned spec).
    net = build_model(trained, movies_prepared.info)
    assert report["model"]["parameters"] == net.count_params()
    # Same spec, seed and data as the winning trial: the same validation score (up to the order
    # of parallel sums), distinct from every other trial's.
    score = weighted_validation_loss(report, trained)
    assert score == pytest.approx(winner["score"], rel=1e-3)
    others = [t["score"] for t in trials.values() if t is not winner]
    assert all(abs(s - score) > 1e-3 * score for s in others), (score, others)

"""The Tuner component's entry point: `tuner_fn`, run by TFX's own Tuner executor (KerasTuner).

A trial is a whole training as the Trainer runs it (`trainer.train.train`: per-head selection,
loss balancing, weight averaging, calibration) with some of the spec's `training:` and `model:`
options replaced by the trial's values, scored on the validation split, never on eval. The
score is the heads' validation losses summed with their loss weights (each head's loss on its
labelled rows, without class weights): the Trainer's own objective, comparable across trials.

The search space is the spec's `tuning.space`, over options declared in pipeline/spec.py (each
value checked by the option's own check when the spec loads), always holding the spec's own
values: the first trial, so the Trainer never gets a worse validation score than without a
Tuner.
TFX's executor writes the best values (`best_hyperparameters`), and the Trainer's `run_fn`
applies them to the spec (`tuned`) before it trains.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

from pipeline.spec import SEARCHABLE, Spec
from preprocessing.options import Integer, Number

log = logging.getLogger(__name__)

OBJECTIVE = "val_weighted_loss"


def _as_json(values: list) -> bool:
    """A KerasTuner Choice holds values of one type among int, float and str (it reads a bool as
    an int): a list of lists (trunk_units), of booleans or of mixed types travels as JSON."""
    kinds = {type(v) for v in values}
    return len(kinds) > 1 or not kinds <= {int, float, str}


def _option(key: str) -> tuple[str, str]:
    """("training" | "model", the option's name) of a space key such as `model.dropout`."""
    section, _, name = key.partition(".")
    return section, name


def current(spec: Spec, key: str):
    section, name = _option(key)
    return getattr(spec, section)[name]


def _check(key: str):
    section, name = _option(key)
    return SEARCHABLE[section][name].check


def searched(spec: Spec, key: str):
    """`key`'s values as searched: the space's list or {min, max, log}, always holding the spec's
    own value (added first to a list, a range widened to it); a number option's values as
    floats (0 and 0.1 are one type)."""
    values, own = spec.tuning["space"][key], current(spec, key)
    number = isinstance(_check(key), Number) and not isinstance(own, bool)
    if isinstance(values, list):
        if number:
            values, own = [float(v) for v in values], float(own)
        return values if own in values else [own, *values]
    low, high = min(values["min"], own), max(values["max"], own)
    return {"min": low, "max": high, "log": bool(values.get("log"))}


def hyperparameters(spec: Spec):
    """The spec's search space as KerasTuner HyperParameters, each defaulting to the spec's own
    value: the first trial (see _spec_first)."""
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    for key in spec.tuning["space"]:
        own, values = current(spec, key), searched(spec, key)
        if isinstance(values, list):
            encode = json.dumps if _as_json(values) else (lambda v: v)
            choices = [encode(v) for v in values]
            own = float(own) if isinstance(values[0], float) else own
            hp.Choice(key, choices, default=encode(own))
            continue
        sampling = "log" if values["log"] else "linear"
        if isinstance(_check(key), Integer):  # the option's declared type, not the value's
            hp.Int(key, values["min"], values["max"], sampling=sampling, default=own)
        else:
            low, high = float(values["min"]), float(values["max"])
            hp.Float(key, low, high, sampling=sampling, default=float(own))
    return hp


def tuned(spec: Spec, values: dict | None) -> Spec:
    """The spec with a trial's (or the Tuner's best) values in place of its own: KerasTuner's
    values, or the decoded ones a training report records (`decoded`)."""
    if not values:
        return spec
    sections = {"training": dict(spec.training), "model": dict(spec.model)}
    space = spec.tuning["space"]
    for key, value in values.items():
        section, name = _option(key)
        if key not in space or name not in sections.get(section, {}):
            raise ValueError(f"{key!r} is not in the spec's tuning.space ({', '.join(space)})")
        choices = searched(spec, key)
        if isinstance(choices, list) and _as_json(choices) and isinstance(value, str):
            value = json.loads(value)
        sections[section][name] = value
    return dataclasses.replace(spec, **sections)


def decoded(trained: Spec, keys) -> dict:
    """{option: the value trained with} of the space's `keys` in the `tuned` spec (lists as lists,
    booleans as booleans): what the training report, the model card and MLflow record."""
    return {key: current(trained, key) for key in keys}


def best_values(hyperparameters_config: dict | None) -> dict:
    """The values in TFX's `best_hyperparameters` artifact (HyperParameters.get_config())."""
    if not hyperparameters_config:
        return {}
    import keras_tuner

    return dict(keras_tuner.HyperParameters.from_config(hyperparameters_config).values)


def weighted_validation_loss(report: dict, spec: Spec) -> float:
    return float(
        sum(h.loss_weight * report["heads"][h.name]["metrics"]["loss"] for h in spec.outputs)
    )


def _spec_first(oracle_class):
    """`oracle_class` whose first trial is the space's defaults: the spec's own values."""

    from keras_tuner.src.engine import trial as trial_module

    running, stopped = trial_module.TrialStatus.RUNNING, trial_module.TrialStatus.STOPPED

    class SpecFirst(oracle_class):
        def populate_space(self, trial_id):
            if not self.trials:
                return {"status": running, "values": dict(self.hyperparameters.values)}
            response = super().populate_space(trial_id)
            values = response.get("values")
            if values is not None and self._duplicate(values):
                # Bayesian optimisation's optimum of a space of lists may be a trial already
                # trained (the same seed would train it again): a random untried one instead.
                values = self._random_values()
                return {"status": running if values else stopped, "values": values}
            return response

    return SpecFirst


def make_tuner(spec: Spec, tft_output, directory: str):
    """A KerasTuner Tuner whose trial trains the spec's model with the trial's values."""
    import keras_tuner
    import tf_keras as keras
    from keras_tuner.src.engine import trial as trial_module

    from trainer.train import train

    trials = spec.tuning["trials"]
    common = dict(
        objective=keras_tuner.Objective(OBJECTIVE, "min"),
        max_trials=trials,
        hyperparameters=hyperparameters(spec),
        tune_new_entries=False,
        seed=spec.training["seed"] or 1,  # KerasTuner draws a random seed for 0
    )
    if spec.tuning["algorithm"] == "bayesian":
        oracle = _spec_first(keras_tuner.oracles.BayesianOptimizationOracle)(
            num_initial_points=max(2, trials // 2), **common
        )
    else:
        oracle = _spec_first(keras_tuner.oracles.RandomSearchOracle)(**common)

    class SpecTuner(keras_tuner.Tuner):
        """A trial is `trainer.train.train` on the tuned spec (no KerasTuner HyperModel)."""

        def run_trial(self, trial, train_files, validation_files, train_steps, eval_steps):
            trial_spec = tuned(spec, trial.hyperparameters.values)
            keras.utils.set_random_seed(spec.training["seed"])
            result = train(
                trial_spec,
                tft_output,
                train_files,
                validation_files,
                train_steps=train_steps,
                eval_steps=eval_steps,
            )
            score = weighted_validation_loss(result.report, trial_spec)
            log.warning(
                "Tuner: trial %s %s: %s %.5f",
                trial.trial_id,
                trial.hyperparameters.values,
                OBJECTIVE,
                score,
            )
            return {OBJECTIVE: score}

        def on_search_end(self):
            super().on_search_end()
            trials = list(self.oracle.trials.values())
            done = [t for t in trials if t.status == trial_module.TrialStatus.COMPLETED]
            if not done:  # else TFX would hand the Trainer a failed trial's values
                first = next((t.message for t in trials if t.message), "no message")
                raise RuntimeError(f"TFX's Tuner: none of {len(trials)} trials completed:\n{first}")
            if len(done) < len(trials):
                log.warning("Tuner: %d of %d trials failed", len(trials) - len(done), len(trials))

    return SpecTuner(
        oracle=oracle,
        directory=directory,
        project_name=spec.name,
        overwrite=True,
    )


def tuner_fn(fn_args):
    """TFX's Tuner entry point: (the KerasTuner Tuner, the arguments of its `search`)."""
    import tensorflow_transform as tft
    from tfx.components.tuner.component import TunerFnResult

    spec = Spec.from_dict(fn_args.custom_config["spec"])
    tft_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    tuner = make_tuner(spec, tft_output, os.path.join(fn_args.working_dir, "trials"))
    return TunerFnResult(
        tuner=tuner,
        fit_kwargs=dict(
            train_files=fn_args.train_files,
            validation_files=fn_args.eval_files,  # the Tuner's eval_args: the validation split
            train_steps=fn_args.train_steps,
            eval_steps=fn_args.eval_steps,
        ),
    )

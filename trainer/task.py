"""The Trainer component's entry point: `run_fn`, run by TFX's generic Trainer executor.

Nothing here assumes a local path or a device count: files come from fn_args (local or gs://),
devices from what TensorFlow sees.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from pipeline.constants import HYPERPARAMETERS_FILE, TRAINING_REPORT_FILE
from pipeline.spec import Spec
from trainer.export import export
from trainer.train import train
from trainer.tuning import best_values, decoded, tuned


def run_fn(fn_args) -> None:
    spec = Spec.from_dict(fn_args.custom_config["spec"])
    # The Tuner's best values (TFX's best_hyperparameters artifact), when a Tuner ran.
    values = best_values(fn_args.hyperparameters)
    spec = tuned(spec, values)
    hyperparameters = decoded(spec, values)
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    log_dir = os.path.join(fn_args.model_run_dir, "logs")
    # Unseeded, one run of the 400-row fixture scored the oscar head's eval AUC 0.06 (others
    # passed its 0.2 gate): a run should be reproducible.
    keras.utils.set_random_seed(spec.training["seed"])
    result = train(
        spec,
        tft_output,
        fn_args.train_files,
        fn_args.eval_files,
        log_dir=log_dir,
        train_steps=fn_args.train_steps or None,
        eval_steps=fn_args.eval_steps or None,
    )
    export(result.model, tft_output, spec, result.info, fn_args.serving_model_dir)
    report = dict(
        result.report, history={k: [float(x) for x in v] for k, v in result.history.items()}
    )
    if hyperparameters:
        report["hyperparameters"] = hyperparameters
        # With the model, so the registry's card says what it was trained with.
        path = os.path.join(fn_args.serving_model_dir, HYPERPARAMETERS_FILE)
        tf.io.gfile.makedirs(os.path.dirname(path))
        with tf.io.gfile.GFile(path, "w") as f:
            json.dump(hyperparameters, f, indent=2)
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, TRAINING_REPORT_FILE), "w") as f:
        json.dump(report, f, indent=2)

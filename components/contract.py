"""The model contract: what the Evaluator reads from an exported model besides its predictions.

The Evaluator reads labels, per-head label masks and slices through the model's
`transform_features` signature; a model exported by older code lacks what the current EvalConfig
asks for, and TFMA fails deep inside Beam on it. Every export records MODEL_CONTRACT in
`assets.extra/`, and the baseline step (components/baseline.py) compares a candidate only with a
published model of the same contract. Bump MODEL_CONTRACT whenever what the Evaluator reads from a
model changes. (Light on purpose: the Trainer imports it.)
"""

import json
import os

import tensorflow as tf

SERVING_DIR = "Format-Serving"  # TFX's serving-model folder inside a Model artifact
MODEL_CONTRACT = 2  # 2: per-head label masks (`<head>_label_present`) in transform_features
CONTRACT_FILE = os.path.join("assets.extra", "mimo_contract.json")


def write_contract(export_dir: str) -> None:
    path = os.path.join(export_dir, CONTRACT_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump({"contract": MODEL_CONTRACT}, f)


def saved_model_contract(saved_model_dir: str) -> int | None:
    """The contract a SavedModel directory records (None: older than contracts)."""
    path = os.path.join(saved_model_dir, CONTRACT_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f).get("contract")


def model_contract(model_uri: str) -> int | None:
    """The contract a Model artifact's serving export records."""
    return saved_model_contract(os.path.join(model_uri, SERVING_DIR))

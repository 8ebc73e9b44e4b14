"""Which blessed model a candidate is compared with: the latest one that speaks the same contract.

The Evaluator reads more from a model than its predictions: labels, per-head label masks and
slices through its `transform_features` signature. A model exported by older code lacks what the
current EvalConfig asks for (e.g. `<head>_label_present`), and TFMA fails deep inside Beam on it.
Every export records MODEL_CONTRACT in `assets.extra/`; the local and Airflow pipelines resolve the
latest blessed model *with the current contract*, so after an upgrade the first run evaluates
with no baseline (gated by values only, as a first run) instead of failing. Bump MODEL_CONTRACT
whenever what the Evaluator reads from a model changes.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
    LatestBlessedModelStrategy,
)

MODEL_CONTRACT = 2  # 2: per-head label masks (`<head>_label_present`) in transform_features
CONTRACT_FILE = os.path.join("assets.extra", "mimo_contract.json")


def write_contract(export_dir: str) -> None:
    path = os.path.join(export_dir, CONTRACT_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump({"contract": MODEL_CONTRACT}, f)


def model_contract(model_uri: str) -> int | None:
    """The contract a Model artifact's serving export records (None: older than contracts)."""
    path = os.path.join(model_uri, "Format-Serving", CONTRACT_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f).get("contract")


class LatestCompatibleBlessedModelStrategy(LatestBlessedModelStrategy):
    """TFX's LatestBlessedModelStrategy over the models whose export has MODEL_CONTRACT."""

    def _resolve(self, input_dict, model_channel_key, model_blessing_channel_key):
        compatible = [
            m for m in input_dict[model_channel_key] if model_contract(m.uri) == MODEL_CONTRACT
        ]
        return super()._resolve(
            {**input_dict, model_channel_key: compatible},
            model_channel_key,
            model_blessing_channel_key,
        )

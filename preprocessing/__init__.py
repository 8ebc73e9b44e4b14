"""Inputs and outputs: one module per modality (`modalities/`) and per head type (`heads/`).

Adding a modality or a head type means adding one module that registers it (see registry.py);
the spec accepts its name, the generated preprocessing_fn, the model builder and the
Evaluator's configuration use it.
"""

from pipeline import env as _env  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from preprocessing.registry import HEAD_TYPES, MODALITIES

__all__ = ["HEAD_TYPES", "MODALITIES"]

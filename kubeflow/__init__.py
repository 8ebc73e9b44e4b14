"""Kubeflow Pipelines: compile (runner.py), the pipeline image (Dockerfile), schedule.py."""

from pipeline import env as _env  # noqa: F401  (TF_USE_LEGACY_KERAS before any TensorFlow import)

# The image every step runs in, unless `mimo compile kubeflow --image` names another.
DEFAULT_IMAGE = "ghcr.io/mimo-tfx/pipeline:0.1.0"
# Where kubeflow/Dockerfile puts the project; the bundled data is under it.
IMAGE_PROJECT_DIR = "/pipeline"

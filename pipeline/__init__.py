"""The pipeline factory, the dataset spec and the runners."""

from pipeline import env as _env  # noqa: F401  (TF_USE_LEGACY_KERAS before any TensorFlow import)

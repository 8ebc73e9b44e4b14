"""Process environment shared by every entry point (CLI, tests, Beam workers, container, notebook).

Import this module before TensorFlow. TFT's transform layer is a tf_keras model, so the whole
product uses one Keras: the legacy tf_keras (Keras 2). Mixing in Keras 3 breaks the Evaluator.
Beam's worker processes inherit os.environ, so setting it here covers them too.
"""

import os
import warnings

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# google-api-core warns on every import that Python 3.10 is old; TFX 1.16 needs 3.10.
warnings.filterwarnings("ignore", category=FutureWarning, module="google.api_core")

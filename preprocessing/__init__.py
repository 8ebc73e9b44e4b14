"""Per-modality transforms. Every module here but the shared ones below is a modality.

Adding a modality means adding one module with a `Modality` subclass; the registry below
discovers it, the spec accepts its name, and the generated preprocessing_fn uses it.
"""

import importlib
import pkgutil

from pipeline import env as _env  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

# Shared machinery, not modalities: base classes, the output heads, the generated preprocessing_fn.
_SHARED = {"base", "heads", "transform"}


def _discover():
    found = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name in _SHARED:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        modality = getattr(module, "MODALITY", None)
        if modality is None:
            raise ImportError(f"{module.__name__} is in preprocessing/ but defines no MODALITY")
        found[modality.name] = modality
    return found


MODALITIES = _discover()

"""A fingerprint of the code that shapes the artifacts, for caching and model cards.

The Transform and Trainer components name their code by module path (not a module file), so
TFX cannot fingerprint it: this digest goes into their custom_config, and a code change
invalidates the cached executions as a spec change does.
"""

import functools
import hashlib
import os

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PACKAGES = ("preprocessing", "trainer", "components", "pipeline")


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    digest = hashlib.sha256()
    for package in _PACKAGES:
        folder = os.path.join(_ROOT, package)
        for name in sorted(os.listdir(folder)):
            if name.endswith(".py"):
                digest.update(f"{package}/{name}".encode())
                with open(os.path.join(folder, name), "rb") as f:
                    digest.update(f.read())
    return digest.hexdigest()[:16]

"""The model registry on a filesystem, laid out the way TensorFlow Serving reads it.

    <registry>/<model name>/<version>/saved_model.pb     integer versions 1, 2, 3, ...
    <registry>/<model name>/<version>/model_card.json    what was pushed, why, and how it scored

Publishing is atomic: a version is written completely in a hidden staging directory of the same
model folder, then renamed to the next free integer. A rename onto an existing version fails
(POSIX: a non-empty directory is never replaced), so two pipelines publishing at once get two
distinct versions, and a push killed mid-copy leaves only a `.staging-*` folder that neither
TensorFlow Serving nor this registry lists. TF Serving serves the highest version; a rollback
re-publishes an earlier version's files as a new, highest version.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import time

CARD = "model_card.json"


class RegistryError(RuntimeError):
    pass


class Registry:
    def __init__(self, root: str):
        self.root = os.path.abspath(root)

    def model_dir(self, name: str) -> str:
        return os.path.join(self.root, name)

    def models(self) -> list[str]:
        if not os.path.isdir(self.root):
            return []
        return sorted(d for d in os.listdir(self.root) if self.versions(d))

    def versions(self, name: str) -> list[int]:
        folder = self.model_dir(name)
        if not os.path.isdir(folder):
            return []
        return sorted(
            int(d)
            for d in os.listdir(folder)
            if d.isdigit() and os.path.isfile(os.path.join(folder, d, "saved_model.pb"))
        )

    def latest(self, name: str) -> int | None:
        versions = self.versions(name)
        return versions[-1] if versions else None

    def _highest_number(self, name: str) -> int:
        """The highest integer-named entry (complete or not): the next push takes the one after."""
        numbers = [int(d) for d in os.listdir(self.model_dir(name)) if d.isdigit()]
        return max(numbers, default=0)

    def path(self, name: str, version: int) -> str:
        return os.path.join(self.model_dir(name), str(version))

    def card(self, name: str, version: int) -> dict:
        path = os.path.join(self.path(name, version), CARD)
        if not os.path.isfile(path):
            raise RegistryError(f"{name} has no version {version} in {self.root}")
        with open(path) as f:
            return json.load(f)

    def publish(self, name: str, saved_model_dir: str, card: dict, copy=shutil.copytree) -> int:
        """Copies the SavedModel and its card in as the next version; returns that version."""
        if not os.path.isfile(os.path.join(saved_model_dir, "saved_model.pb")):
            raise RegistryError(f"{saved_model_dir} holds no saved_model.pb")
        folder = self.model_dir(name)
        os.makedirs(folder, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".staging-", dir=folder)
        try:
            copy(saved_model_dir, staging, dirs_exist_ok=True)
            for _ in range(1000):
                # A failed rename means another push took that number: look again.
                version = self._highest_number(name) + 1
                final = os.path.join(folder, str(version))
                card = dict(
                    card,
                    model_name=name,
                    version=version,
                    published_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                )
                with open(os.path.join(staging, CARD), "w") as f:
                    json.dump(card, f, indent=2, sort_keys=True)
                try:
                    os.rename(staging, final)  # atomic; fails if `final` exists and is not empty
                    return version
                except OSError as e:
                    if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
            raise RegistryError(f"no free version found for {name}")
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def rollback(self, name: str, version: int) -> int:
        """Makes `version` current again by re-publishing it as the newest version."""
        card = self.card(name, version)
        card = dict(card, rollback_of=version, pushed_by="rollback")
        return self.publish(name, self.path(name, version), card)

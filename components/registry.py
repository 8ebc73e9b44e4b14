"""The model registry on a filesystem, laid out the way TensorFlow Serving reads it.

    <registry>/<model name>/<version>/saved_model.pb     integer versions 1, 2, 3, ...
    <registry>/<model name>/<version>/model_card.json    what was pushed, why, and how it scored

Publishing is atomic: a version is written completely in a hidden staging directory of the same
model folder, then renamed to the next free integer. A rename onto an existing version fails
(POSIX: a non-empty directory is never replaced), so two pipelines publishing at once get two
distinct versions, and a push killed mid-copy leaves only a `.staging-*` folder that neither
TensorFlow Serving nor this registry lists. TF Serving serves the highest version; a rollback
re-publishes an earlier version's files as a new, highest version.

The registry trusts only what it finished: a version is an integer folder holding a
`saved_model.pb` and a `model_card.json` that names that version. Any other integer folder (a hand
copy, a crash outside `publish`, a card that is not JSON) is *damaged*: never listed, shown, rolled
back to or compared with, reported by `damaged()` so the CLI and the pusher can warn, and moved
aside by `gc()` into a hidden `.damaged-<n>-<time>` folder that TF Serving ignores. Version
numbers are never reused, not even a damaged one's.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass

CARD = "model_card.json"


STAGING_PREFIX = ".staging-"
DAMAGED_PREFIX = ".damaged-"
LOCK = ".publish.lock"  # shared by publishes, exclusive for gc


class RegistryError(RuntimeError):
    pass


@dataclass(frozen=True)
class Damaged:
    """A folder in a model's directory that is not a complete version, and why."""

    path: str
    reason: str


class Registry:
    def __init__(self, root: str):
        self.root = os.path.abspath(root)

    def model_dir(self, name: str) -> str:
        return os.path.join(self.root, name)

    def models(self) -> list[str]:
        """Every model with a version or a damaged folder."""
        if not os.path.isdir(self.root):
            return []
        return sorted(
            d
            for d in os.listdir(self.root)
            if not d.startswith(".") and (self._numbered(d) or self.damaged(d))
        )

    def versions(self, name: str) -> list[int]:
        """The complete versions (SavedModel and a card naming the version), ascending."""
        return sorted(int(d) for d in self._numbered(name) if self._fault(name, d) is None)

    def damaged(self, name: str) -> list[Damaged]:
        """Integer folders that are not complete versions, and publishes' staging folders that
        no running publish holds."""
        found = self._faults(name)
        if any(_is_staging(d) for d in found):
            with self._lock(name, fcntl.LOCK_EX | fcntl.LOCK_NB) as free:
                if not free:  # a publish is copying into its staging folder
                    found = [d for d in found if not _is_staging(d)]
        return found

    def _faults(self, name: str) -> list[Damaged]:
        """Integer folders that are not complete versions, then every staging folder (whether a
        publish is still using it or not: the caller's lock decides)."""
        folder = self.model_dir(name)
        numbered = [
            Damaged(os.path.join(folder, d), fault)
            for d in sorted(self._numbered(name), key=int)
            if (fault := self._fault(name, d)) is not None
        ]
        staging = [
            Damaged(os.path.join(folder, d), "an unfinished publish")
            for d in sorted(self._entries(name))
            if d.startswith(STAGING_PREFIX)
        ]
        return numbered + staging

    def _entries(self, name: str) -> list[str]:
        folder = self.model_dir(name)
        return os.listdir(folder) if os.path.isdir(folder) else []

    def _numbered(self, name: str) -> list[str]:
        return [d for d in self._entries(name) if d.isdigit()]

    def _fault(self, name: str, entry: str) -> str | None:
        """Why `<model>/<entry>` is not a complete version (None: it is one)."""
        path = os.path.join(self.model_dir(name), entry)
        if not os.path.isdir(path):
            return "not a folder"
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            return "no saved_model.pb (an incomplete copy)"
        try:
            with open(os.path.join(path, CARD)) as f:
                card = json.load(f)
        except FileNotFoundError:
            return f"no {CARD}: not published by the registry (a hand copy or a crashed copy)"
        except (OSError, ValueError) as e:
            return f"{CARD} cannot be read ({e})"
        if not isinstance(card, dict) or card.get("version") != int(entry):
            return f"{CARD} does not name version {entry}"
        return None

    @contextmanager
    def _lock(self, name: str, mode: int):
        """flock on `<model>/.publish.lock`; yields False when a non-blocking request is refused."""
        os.makedirs(self.model_dir(name), exist_ok=True)
        with open(os.path.join(self.model_dir(name), LOCK), "a") as f:
            try:
                fcntl.flock(f, mode)
            except BlockingIOError:
                yield False
                return
            yield True

    def latest(self, name: str) -> int | None:
        versions = self.versions(name)
        return versions[-1] if versions else None

    def _highest_number(self, name: str) -> int:
        """The highest number an entry has or had (complete, damaged or moved aside by gc): the
        next push takes the one after."""
        numbers = [int(d) for d in self._numbered(name)] + [
            int(m.group(1))
            for d in self._entries(name)
            if (m := re.match(re.escape(DAMAGED_PREFIX) + r"(\d+)-", d))
        ]
        return max(numbers, default=0)

    def path(self, name: str, version: int) -> str:
        return os.path.join(self.model_dir(name), str(version))

    def card(self, name: str, version: int) -> dict:
        if version is None or self._fault(name, str(version)) is not None:
            known = ", ".join(map(str, self.versions(name))) or "none"
            raise RegistryError(
                f"{name} has no version {version} in {self.root} (its versions: {known})"
            )
        with open(os.path.join(self.path(name, version), CARD)) as f:
            return json.load(f)

    def publish(self, name: str, saved_model_dir: str, card: dict, copy=shutil.copytree) -> int:
        """Copies the SavedModel and its card in as the next version; returns that version."""
        if not os.path.isfile(os.path.join(saved_model_dir, "saved_model.pb")):
            raise RegistryError(f"{saved_model_dir} holds no saved_model.pb")
        with self._lock(name, fcntl.LOCK_SH):
            return self._publish(name, saved_model_dir, card, copy)

    def _publish(self, name: str, saved_model_dir: str, card: dict, copy) -> int:
        folder = self.model_dir(name)
        staging = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder)
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

    def gc(self, name: str) -> list[tuple[Damaged, str | None]]:
        """Moves every damaged version folder aside (into `<model>/.damaged-<n>-<time>`, kept for
        inspection; TF Serving ignores names that are not integers) and deletes unfinished
        publishes' staging folders. Returns [(what, where it went or None if deleted)]."""
        done = []
        with self._lock(name, fcntl.LOCK_EX | fcntl.LOCK_NB) as free:
            if not free:
                raise RegistryError(f"a publish of {name} is in progress; run gc when it is done")
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            for d in self._faults(name):
                if _is_staging(d):
                    shutil.rmtree(d.path, ignore_errors=True)
                    done.append((d, None))
                else:
                    number = os.path.basename(d.path)
                    dst = os.path.join(self.model_dir(name), f"{DAMAGED_PREFIX}{number}-{stamp}")
                    os.rename(d.path, dst)
                    done.append((d, dst))
        return done


def _is_staging(d: Damaged) -> bool:
    return os.path.basename(d.path).startswith(STAGING_PREFIX)

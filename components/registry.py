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
    """A registry on a local or mounted POSIX filesystem (atomic rename, kernel locks)."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)

    # -- the filesystem, as this registry reaches it (ObjectStoreRegistry: tf.io.gfile) --------
    def _listdir(self, path: str) -> list[str]:
        return os.listdir(path) if os.path.isdir(path) else []

    def _isdir(self, path: str) -> bool:
        return os.path.isdir(path)

    def _isfile(self, path: str) -> bool:
        return os.path.isfile(path)

    def _read(self, path: str) -> str:
        with open(path) as f:
            return f.read()

    def exists(self) -> bool:
        return self._isdir(self.root)

    def model_dir(self, name: str) -> str:
        return os.path.join(self.root, name)

    def models(self) -> list[str]:
        """Every model with a version or a damaged folder."""
        return sorted(
            d
            for d in self._listdir(self.root)
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
        return self._listdir(self.model_dir(name))

    def _numbered(self, name: str) -> list[str]:
        return [d for d in self._entries(name) if d.isdigit()]

    def _fault(self, name: str, entry: str) -> str | None:
        """Why `<model>/<entry>` is not a complete version (None: it is one)."""
        path = os.path.join(self.model_dir(name), entry)
        if not self._isdir(path):
            return "not a folder"
        if not self._isfile(os.path.join(path, "saved_model.pb")):
            return "no saved_model.pb (an incomplete copy)"
        if not self._isfile(os.path.join(path, CARD)):
            return f"no {CARD}: not published by the registry (a hand copy or a crashed copy)"
        try:
            card = json.loads(self._read(os.path.join(path, CARD)))
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
        """The newest complete version (checked from the highest number down)."""
        for entry in sorted(self._numbered(name), key=int, reverse=True):
            if self._fault(name, entry) is None:
                return int(entry)
        return None

    def version(self, name: str, version: int | None = None) -> int:
        """`version` if it is one of `name`'s complete versions, else its newest (None); a
        RegistryError naming the registry and the versions it has otherwise."""
        versions = self.versions(name) if self.exists() else []
        if not versions:
            raise RegistryError(f"no version of {name!r} in {self.root}")
        if version is None:
            return versions[-1]
        if version not in versions:
            raise RegistryError(
                f"{name} has no version {version} in {self.root} "
                f"(its versions: {', '.join(map(str, versions))})"
            )
        return version

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

    def version_file(self, name: str, version: int, file_name: str) -> str | None:
        """The path of a file published in a version (e.g. report.html), None if it has none."""
        path = os.path.join(self.path(name, version), file_name)
        return path if self._isfile(path) else None

    def card(self, name: str, version: int) -> dict:
        if version is None or self._fault(name, str(version)) is not None:
            known = ", ".join(map(str, self.versions(name))) or "none"
            raise RegistryError(
                f"{name} has no version {version} in {self.root} (its versions: {known})"
            )
        return json.loads(self._read(os.path.join(self.path(name, version), CARD)))

    def publish(
        self,
        name: str,
        saved_model_dir: str,
        card: dict,
        copy=shutil.copytree,
        extras: dict | None = None,
    ) -> int:
        """Copies the SavedModel, the `extras` ({file name in the version: source file}, e.g.
        the run's report.html) and the card in as the next version; returns that version."""
        if not os.path.isfile(os.path.join(saved_model_dir, "saved_model.pb")):
            raise RegistryError(f"{saved_model_dir} holds no saved_model.pb")
        with self._lock(name, fcntl.LOCK_SH):
            return self._publish(name, saved_model_dir, card, copy, extras or {})

    def _publish(self, name: str, saved_model_dir: str, card: dict, copy, extras: dict) -> int:
        folder = self.model_dir(name)
        staging = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder)
        try:
            copy(saved_model_dir, staging, dirs_exist_ok=True)
            for file_name, source in extras.items():
                tf_gfile_copy(source, os.path.join(staging, file_name))
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


CLAIMS = ".claims"  # ObjectStoreRegistry: `<model>/.claims/<version>-<publish id>`
STALE_SECONDS = 3600  # an object-store publish older than this that did not finish has died


class ObjectStoreRegistry(Registry):
    """The same registry on an object store through `tf.io.gfile`, for pipelines whose pusher
    runs in a pod that mounts no shared volume (Kubeflow): `gs://` with the pinned stack
    (tensorflow-io-gcs-filesystem); another scheme needs a TensorFlow filesystem for it
    (e.g. tensorflow-io's `s3://`).

    An object store has no atomic rename of a folder and no lock, so a publish goes:
    1. copy the SavedModel into `<model>/.staging-<publish id>/` (invisible to TF Serving: not an
       integer name);
    2. claim the next number: write `<model>/.claims/<n>-<publish id>`, then list the claims of
       `n`; if another publish claimed it too, both give `n` up (never used, like a damaged
       version's number) and try `n+1` after a random pause. With the listing consistency of GCS
       and S3 (a listing after a write shows it), at most one publish keeps any number. Claims
       of publishes that did not finish stay (tiny objects): their numbers are never given again;
    3. copy the staging folder to `<model>/<n>/`: variables and assets first, `saved_model.pb`
       after them, `model_card.json` last: the card is the completion marker;
    4. delete the staging folder and the claim.

    What readers see meanwhile: `mimo models list`, the pusher and PublishedBaseline ignore
    `<n>/` until its card is there (as on a filesystem). TF Serving lists `<n>/` as soon as its
    first object exists; until `saved_model.pb` lands, its load attempt fails and is retried
    (`--max_num_load_retries`, one a minute by default) while it keeps serving the version it had;
    once `saved_model.pb` is there the SavedModel is complete. So TF Serving never loads a partial
    model, but it may log a failed attempt, and it may serve `<n>` a moment before the card is
    written. A publish that dies after step 3 began leaves `<n>/` without a card: damaged, shown by
    `damaged()` and moved aside by `gc()`, as on a filesystem. Without locks, unfinished staging
    folders, claims and versions count as damaged (and are collected) only once they are older
    than STALE_SECONDS.
    """

    LAST = ("saved_model.pb", CARD)  # copied after every other file, in this order

    def __init__(self, root: str):
        self.root = root.rstrip("/")

    @staticmethod
    def _gfile():
        import tensorflow as tf

        return tf.io.gfile

    def _listdir(self, path: str) -> list[str]:
        gfile = self._gfile()
        return [d.rstrip("/") for d in gfile.listdir(path)] if gfile.isdir(path) else []

    def _isdir(self, path: str) -> bool:
        return self._gfile().isdir(path)

    def _isfile(self, path: str) -> bool:
        gfile = self._gfile()
        return gfile.exists(path) and not gfile.isdir(path)

    def _read(self, path: str) -> str:
        with self._gfile().GFile(path) as f:
            return f.read()

    def _write(self, path: str, text: str) -> None:
        with self._gfile().GFile(path, "w") as f:
            f.write(text)

    def _age(self, path: str) -> float:
        """Seconds since the newest object under path was written."""
        gfile = self._gfile()
        times = [gfile.stat(path).mtime_nsec] if self._isfile(path) else []
        for folder, _, files in gfile.walk(path) if self._isdir(path) else ():
            times += [gfile.stat(os.path.join(folder, f)).mtime_nsec for f in files]
        return time.time() - max(times, default=0) / 1e9

    def _claims(self, name: str) -> list[str]:
        return self._listdir(os.path.join(self.model_dir(name), CLAIMS))

    def damaged(self, name: str) -> list[Damaged]:
        """Integer folders that are not complete versions and unfinished publishes' staging
        folders, once older than STALE_SECONDS (a younger one may be a publish at work)."""
        return [d for d in self._faults(name) if self._age(d.path) > STALE_SECONDS]

    def _highest_number(self, name: str) -> int:
        claimed = [int(c.split("-", 1)[0]) for c in self._claims(name) if c.split("-")[0].isdigit()]
        return max([super()._highest_number(name), *claimed])

    def _copy(self, src: str, dst: str) -> None:
        copy_tree(src, dst, last=self.LAST)

    def publish(
        self, name: str, saved_model_dir: str, card: dict, extras: dict | None = None
    ) -> int:
        import random
        import uuid

        gfile = self._gfile()
        if not self._isfile(os.path.join(saved_model_dir, "saved_model.pb")):
            raise RegistryError(f"{saved_model_dir} holds no saved_model.pb")
        folder = self.model_dir(name)
        publish_id = uuid.uuid4().hex
        staging = os.path.join(folder, f"{STAGING_PREFIX}{publish_id}")
        claims = os.path.join(folder, CLAIMS)
        version = None  # set once this publish holds the number alone
        try:
            self._copy(saved_model_dir, staging)
            for file_name, source in (extras or {}).items():
                tf_gfile_copy(source, os.path.join(staging, file_name))
            gfile.makedirs(claims)
            for _ in range(50):
                number = self._highest_number(name) + 1
                mine = f"{number}-{publish_id}"
                self._write(os.path.join(claims, mine), publish_id)
                if [c for c in self._claims(name) if c.split("-")[0] == str(number)] == [mine]:
                    version = number
                    break
                time.sleep(random.uniform(0.05, 0.5))  # claimed twice: both try the next one
            else:
                raise RegistryError(f"no free version found for {name} in {self.root}")
            card = dict(
                card,
                model_name=name,
                version=version,
                published_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            )
            self._write(os.path.join(staging, CARD), json.dumps(card, indent=2, sort_keys=True))
            self._copy(staging, self.path(name, version))
        except Exception:
            # A failure this process sees: take back what it wrote (a killed one cannot: see
            # damaged() and gc()). The claim stays, so the number is never given again.
            for path in (staging, self.path(name, version) if version else None):
                if path and gfile.exists(path):
                    gfile.rmtree(path)
            raise
        gfile.rmtree(staging)
        gfile.remove(os.path.join(claims, mine))
        return version

    def gc(self, name: str) -> list[tuple[Damaged, str | None]]:
        """As Registry.gc, for what is older than STALE_SECONDS; a damaged version is copied
        aside and then deleted (an object store moves nothing). Claims stay (see the class)."""
        gfile = self._gfile()
        done = []
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        for d in self.damaged(name):
            if _is_staging(d):
                gfile.rmtree(d.path)
                done.append((d, None))
            else:
                number = os.path.basename(d.path)
                dst = os.path.join(self.model_dir(name), f"{DAMAGED_PREFIX}{number}-{stamp}")
                if self._isdir(d.path):
                    self._copy(d.path, dst)
                    gfile.rmtree(d.path)
                else:  # an object named like a version
                    gfile.copy(d.path, dst)
                    gfile.remove(d.path)
                done.append((d, dst))
        return done


def copy_tree(src: str, dst: str, last: tuple[str, ...] = ()) -> None:
    """Copies the files under src into dst through tf.io.gfile (any filesystem TensorFlow
    reaches); the files named in `last` (relative paths) after every other, in that order."""
    import tensorflow as tf

    files = []
    for folder, _, names in tf.io.gfile.walk(src):
        files += [os.path.relpath(os.path.join(folder, n), src) for n in names]
    order = {rel: i + 1 for i, rel in enumerate(last)}
    for rel in sorted(files, key=lambda r: (order.get(r, 0), r)):
        tf.io.gfile.makedirs(os.path.dirname(os.path.join(dst, rel)))
        tf.io.gfile.copy(os.path.join(src, rel), os.path.join(dst, rel), overwrite=True)


def tf_gfile_copy(src: str, dst: str) -> None:
    """One file, through tf.io.gfile (a report from a Kubeflow artifact store, say), into its
    folder (made when missing)."""
    import tensorflow as tf

    tf.io.gfile.makedirs(os.path.dirname(dst))
    tf.io.gfile.copy(src, dst, overwrite=True)


def open_registry(root: str) -> Registry:
    """The registry at root: on an object store (`gs://...`, any URL) or a filesystem path."""
    return ObjectStoreRegistry(root) if "://" in root else Registry(root)

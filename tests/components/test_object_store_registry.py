"""The registry on an object store (gs://, s3://): the publish protocol through tf.io.gfile, run
against a local folder through that same API (no bucket here)."""

import os
import signal
import subprocess
import sys
import threading

import pytest
import tensorflow as tf
from conftest import REPO
from helpers import fake_saved_model

import components.registry as registry_module
from components.registry import (
    CARD,
    CLAIMS,
    ObjectStoreRegistry,
    Registry,
    RegistryError,
    open_registry,
)


def test_urls_open_the_object_store_registry_and_paths_the_filesystem_one(tmp_path):
    assert type(open_registry("gs://bucket/models/")) is ObjectStoreRegistry
    assert open_registry("gs://bucket/models/").root == "gs://bucket/models"
    assert type(open_registry(str(tmp_path))) is Registry


def test_versions_cards_and_rollback_through_gfile(tmp_path):
    reg = ObjectStoreRegistry(str(tmp_path / "registry"))
    assert not reg.exists() and reg.versions("m") == []
    (tmp_path / "report.html").write_text("<html>a</html>")
    extras = {"report.html": str(tmp_path / "report.html")}
    model = fake_saved_model(tmp_path / "a", b"A")
    assert reg.publish("m", model, {"note": "a"}, extras=extras) == 1
    assert reg.publish("m", fake_saved_model(tmp_path / "b", b"B"), {"note": "b"}) == 2
    assert reg.exists() and reg.models() == ["m"] and reg.versions("m") == [1, 2]
    assert reg.card("m", 2)["note"] == "b" and reg.card("m", 2)["version"] == 2
    assert reg.rollback("m", 1) == 3
    with open(os.path.join(reg.path("m", 3), "saved_model.pb"), "rb") as f:
        assert f.read() == b"A"
    assert reg.card("m", 3)["rollback_of"] == 1
    with open(os.path.join(reg.path("m", 3), "report.html")) as f:
        assert f.read() == "<html>a</html>"  # published beside the model, kept by a rollback
    # Nothing of the publishes is left: no staging folder, no claim.
    assert sorted(os.listdir(reg.model_dir("m"))) == [CLAIMS, "1", "2", "3"]
    assert os.listdir(os.path.join(reg.model_dir("m"), CLAIMS)) == []
    # The filesystem registry reads what the object-store one wrote: one layout.
    assert Registry(reg.root).versions("m") == [1, 2, 3]
    with pytest.raises(RegistryError, match="no saved_model.pb"):
        reg.publish("m", str(tmp_path), {})


def test_the_card_is_written_last_and_a_version_is_seen_only_then(tmp_path, monkeypatch):
    reg = ObjectStoreRegistry(str(tmp_path / "registry"))
    model = fake_saved_model(tmp_path / "model", files=3)
    reg.publish("m", model, {})
    copied, seen = [], []
    real_copy = tf.io.gfile.copy

    def recording_copy(src, dst, overwrite=False):
        real_copy(src, dst, overwrite)
        if os.path.dirname(dst).startswith(reg.path("m", 2)):
            copied.append(os.path.relpath(dst, reg.path("m", 2)))
            seen.append(reg.versions("m"))  # what a reader sees after each object lands

    monkeypatch.setattr(tf.io.gfile, "copy", recording_copy)
    assert reg.publish("m", model, {}) == 2
    assert copied[-2:] == ["saved_model.pb", CARD]  # TF Serving can load only a whole model
    assert sorted(copied[:-2]) == [f"variables/part-{i}" for i in range(3)]
    assert seen[:-1] == [[1]] * (len(copied) - 1) and seen[-1] == [1, 2]


KILLED_PUSH = """
import os, signal, sys
sys.path.insert(0, {repo!r})
import tensorflow as tf
from components.registry import ObjectStoreRegistry

reg = ObjectStoreRegistry({registry!r})
real_copy, copied = tf.io.gfile.copy, []

def dying_copy(src, dst, overwrite=False):
    if dst.startswith(reg.path("m", 2) + os.sep):
        copied.append(dst)
        if len(copied) == 3:
            os.kill(os.getpid(), signal.SIGKILL)  # the pod is killed mid-copy
    real_copy(src, dst, overwrite)

tf.io.gfile.copy = dying_copy
reg.publish("m", {model!r}, {{}})
"""


def test_a_failed_publish_takes_back_what_it_wrote_and_keeps_its_number(tmp_path, monkeypatch):
    reg = ObjectStoreRegistry(str(tmp_path / "registry"))
    model = fake_saved_model(tmp_path / "model", files=4)
    reg.publish("m", model, {})
    real_copy = tf.io.gfile.copy

    def failing_copy(src, dst, overwrite=False):
        if dst.startswith(reg.path("m", 2) + os.sep) and dst.endswith("saved_model.pb"):
            raise OSError("quota exceeded")
        real_copy(src, dst, overwrite)

    monkeypatch.setattr(tf.io.gfile, "copy", failing_copy)
    with pytest.raises(OSError, match="quota"):
        reg.publish("m", model, {})
    monkeypatch.setattr(tf.io.gfile, "copy", real_copy)
    assert sorted(os.listdir(reg.model_dir("m"))) == [CLAIMS, "1"]
    assert reg.publish("m", model, {}) == 3  # number 2 stays claimed, never given again


def test_a_publish_killed_mid_copy_is_damaged_once_stale_and_collected(tmp_path, monkeypatch):
    reg = ObjectStoreRegistry(str(tmp_path / "registry"))
    model = fake_saved_model(tmp_path / "model", files=4)
    reg.publish("m", model, {})
    script = KILLED_PUSH.format(repo=REPO, registry=reg.root, model=model)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert reg.versions("m") == [1]  # version 2 has no card: never a version
    assert reg.damaged("m") == []  # young: it could be a publish at work
    monkeypatch.setattr(registry_module, "STALE_SECONDS", -1)
    reasons = {os.path.basename(d.path): d.reason for d in reg.damaged("m")}
    assert "no saved_model.pb" in reasons["2"] and len(reasons) == 2  # and its staging folder
    moved = reg.gc("m")
    assert {os.path.basename(d.path) for d, _ in moved} == set(reasons)
    assert reg.damaged("m") == []
    # The dead publish's claim stays: number 2 is never given again, even after gc.
    assert [c.split("-")[0] for c in os.listdir(os.path.join(reg.model_dir("m"), CLAIMS))] == ["2"]
    assert reg.publish("m", model, {}) == 3


def test_concurrent_publishes_get_distinct_complete_versions(tmp_path):
    reg = ObjectStoreRegistry(str(tmp_path / "registry"))
    model = fake_saved_model(tmp_path / "model", files=20)
    start, versions = threading.Barrier(4), []

    def publish(i):
        start.wait()
        versions.append(ObjectStoreRegistry(reg.root).publish("m", model, {"worker": i}))

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(set(versions)) == 4  # numbers given up after a collision are skipped, not reused
    assert reg.versions("m") == sorted(versions)
    assert {reg.card("m", v)["worker"] for v in versions} == {0, 1, 2, 3}
    for v in versions:
        assert len(os.listdir(os.path.join(reg.path("m", v), "variables"))) == 20


def test_a_number_another_publish_claimed_is_left_to_it(tmp_path):
    reg = ObjectStoreRegistry(str(tmp_path / "registry"))
    model = fake_saved_model(tmp_path / "model")
    assert reg.publish("m", model, {}) == 1
    claims = os.path.join(reg.model_dir("m"), CLAIMS)
    with open(os.path.join(claims, "2-another-publish"), "w") as f:  # at work on version 2
        f.write("another")
    assert reg.publish("m", model, {}) == 3
    assert reg.versions("m") == [1, 3] and os.listdir(claims) == ["2-another-publish"]

"""The filesystem registry: integer versions, atomic publishing, concurrency, rollback."""

import multiprocessing
import os
import signal
import subprocess
import sys

import pytest
from conftest import REPO
from helpers import fake_saved_model

from components.registry import Registry, RegistryError


def test_versions_are_consecutive_integers_with_cards(tmp_path):
    model = fake_saved_model(tmp_path / "model")
    reg = Registry(tmp_path / "registry")
    assert reg.versions("movies") == [] and reg.latest("movies") is None
    assert reg.publish("movies", model, {"note": "first"}) == 1
    assert reg.publish("movies", model, {"note": "second"}) == 2
    assert reg.versions("movies") == [1, 2] and reg.models() == ["movies"]
    card = reg.card("movies", 2)
    assert card["note"] == "second" and card["version"] == 2 and card["model_name"] == "movies"
    assert os.path.isfile(os.path.join(reg.path("movies", 1), "variables", "part-4"))
    with pytest.raises(RegistryError, match="no version 7"):
        reg.card("movies", 7)
    with pytest.raises(RegistryError, match="no saved_model.pb"):
        reg.publish("movies", str(tmp_path), {})


def test_rollback_republishes_as_newest(tmp_path):
    reg = Registry(tmp_path / "registry")
    reg.publish("m", fake_saved_model(tmp_path / "a", b"A"), {"note": "a"})
    reg.publish("m", fake_saved_model(tmp_path / "b", b"B"), {"note": "b"})
    assert reg.rollback("m", 1) == 3
    with open(os.path.join(reg.path("m", 3), "saved_model.pb"), "rb") as f:
        assert f.read() == b"A"
    card = reg.card("m", 3)
    assert card["rollback_of"] == 1 and card["note"] == "a" and card["version"] == 3


def test_failed_copy_leaves_registry_unchanged(tmp_path):
    reg = Registry(tmp_path / "registry")
    reg.publish("m", fake_saved_model(tmp_path / "a"), {})
    before = sorted(os.listdir(reg.model_dir("m")))

    def broken_copy(src, dst, dirs_exist_ok):
        os.makedirs(os.path.join(dst, "variables"))
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        reg.publish("m", fake_saved_model(tmp_path / "b"), {}, copy=broken_copy)
    assert sorted(os.listdir(reg.model_dir("m"))) == before
    assert reg.versions("m") == [1]


SLOW_PUSH = """
import shutil, sys, time
sys.path.insert(0, {repo!r})
from components.registry import Registry

def slow_copy(src, dst, dirs_exist_ok):
    shutil.copy(src + "/saved_model.pb", dst)
    print("copying", flush=True)
    time.sleep(60)

Registry({registry!r}).publish("m", {model!r}, {{}}, copy=slow_copy)
"""


def test_push_killed_mid_copy_leaves_no_visible_version(tmp_path):
    reg = Registry(tmp_path / "registry")
    model = fake_saved_model(tmp_path / "model")
    reg.publish("m", model, {})
    script = SLOW_PUSH.format(repo=REPO, registry=str(tmp_path / "registry"), model=model)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "copying"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    leftovers = [d for d in os.listdir(reg.model_dir("m")) if d.startswith(".staging-")]
    assert leftovers, "the killed push was mid-copy in its staging directory"
    assert reg.versions("m") == [1]  # nothing half-written is visible as a version
    assert reg.publish("m", model, {}) == 2


def _publish(registry, model, barrier, results):
    barrier.wait()
    results.put(Registry(registry).publish("m", model, {"pid": os.getpid()}))


def test_concurrent_pushes_get_distinct_complete_versions(tmp_path):
    model = fake_saved_model(tmp_path / "model", files=40)
    registry = str(tmp_path / "registry")
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    workers = [
        ctx.Process(target=_publish, args=(registry, model, barrier, results)) for _ in range(4)
    ]
    for w in workers:
        w.start()
    versions = [results.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    assert sorted(versions) == [1, 2, 3, 4]
    reg = Registry(registry)
    pids = set()
    for v in versions:
        files = os.listdir(os.path.join(reg.path("m", v), "variables"))
        assert len(files) == 40
        pids.add(reg.card("m", v)["pid"])
    assert len(pids) == 4
    assert not [d for d in os.listdir(reg.model_dir("m")) if d.startswith(".staging-")]


def test_an_incomplete_numbered_folder_is_skipped_not_listed(tmp_path):
    reg = Registry(tmp_path / "registry")
    model = fake_saved_model(tmp_path / "model")
    assert reg.publish("m", model, {}) == 1
    os.makedirs(os.path.join(reg.model_dir("m"), "2", "variables"))  # e.g. a hand copy gone bad
    assert reg.versions("m") == [1]
    assert reg.publish("m", model, {}) == 3
    assert reg.versions("m") == [1, 3]

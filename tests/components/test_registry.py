"""The filesystem registry: integer versions, atomic publishing, concurrency, rollback."""

import multiprocessing
import os
import shutil
import signal
import subprocess
import sys

import pytest
from conftest import REPO
from helpers import fake_saved_model

from components.registry import CARD, Registry, RegistryError


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
    """... with the files published beside the model (the run's report)."""
    reg = Registry(tmp_path / "registry")
    (tmp_path / "report.html").write_text("<html>a</html>")
    extras = {"report.html": str(tmp_path / "report.html")}
    reg.publish("m", fake_saved_model(tmp_path / "a", b"A"), {"note": "a"}, extras=extras)
    reg.publish("m", fake_saved_model(tmp_path / "b", b"B"), {"note": "b"})
    assert reg.rollback("m", 1) == 3
    with open(os.path.join(reg.path("m", 3), "saved_model.pb"), "rb") as f:
        assert f.read() == b"A"
    card = reg.card("m", 3)
    assert card["rollback_of"] == 1 and card["note"] == "a" and card["version"] == 3
    for version in (1, 3):
        with open(os.path.join(reg.path("m", version), "report.html")) as f:
            assert f.read() == "<html>a</html>"
    assert not os.path.exists(os.path.join(reg.path("m", 2), "report.html"))


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


def start_slow_push(reg, model):
    """A publish in another process, returned once it is copying into its staging folder."""
    script = SLOW_PUSH.format(repo=REPO, registry=reg.root, model=model)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "copying"
    return proc


def test_push_killed_mid_copy_leaves_no_visible_version(tmp_path):
    reg = Registry(tmp_path / "registry")
    model = fake_saved_model(tmp_path / "model")
    reg.publish("m", model, {})
    proc = start_slow_push(reg, model)
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


def test_only_folders_the_registry_finished_are_versions(tmp_path):
    """Integer folders that are not complete versions (a hand copy without a card, a card that is
    not JSON or names another version, variables only) are named by damaged(), never listed,
    shown or rolled back to, and their numbers are never reused."""
    reg = Registry(tmp_path / "registry")
    model = fake_saved_model(tmp_path / "model")
    assert reg.publish("m", model, {}) == 1
    folder = reg.model_dir("m")
    os.makedirs(os.path.join(folder, "2", "variables"))
    fake_saved_model(os.path.join(folder, "3"))  # copied by hand: no card
    fake_saved_model(os.path.join(folder, "4"))
    with open(os.path.join(folder, "4", CARD), "w") as f:
        f.write('{"version": 4, "cut')
    shutil.copytree(reg.path("m", 1), os.path.join(folder, "5"))  # a card naming version 1
    assert reg.versions("m") == [1] and reg.latest("m") == 1 and reg.models() == ["m"]
    reasons = {os.path.basename(d.path): d.reason for d in reg.damaged("m")}
    assert reasons["2"] == "no saved_model.pb (an incomplete copy)"
    assert reasons["3"].startswith("no model_card.json: not published by the registry")
    assert reasons["4"].startswith("model_card.json cannot be read")
    assert reasons["5"] == "model_card.json does not name version 5"
    for bad in (3, 4, 5):
        with pytest.raises(RegistryError, match=f"m has no version {bad} .*its versions: 1"):
            reg.card("m", bad)
        with pytest.raises(RegistryError, match=f"no version {bad}"):
            reg.rollback("m", bad)
    assert reg.publish("m", model, {}) == 6


def test_gc_moves_damaged_folders_aside_and_keeps_numbers_unique(tmp_path):
    reg = Registry(tmp_path / "registry")
    model = fake_saved_model(tmp_path / "model")
    reg.publish("m", model, {})
    fake_saved_model(os.path.join(reg.model_dir("m"), "2"))  # no card
    fake_saved_model(os.path.join(reg.model_dir("m"), ".staging-dead"))
    done = {os.path.basename(d.path): where for d, where in reg.gc("m")}
    assert done[".staging-dead"] is None and os.path.basename(done["2"]).startswith(".damaged-2-")
    assert os.path.isfile(os.path.join(done["2"], "saved_model.pb"))  # kept for inspection
    assert not reg.damaged("m") and reg.gc("m") == []
    assert reg.publish("m", model, {}) == 3  # 2 is not reused: TF Serving may have seen it


def test_gc_waits_for_a_running_publish(tmp_path):
    """A staging folder of a publish that is still copying is neither damaged nor collected."""
    reg = Registry(tmp_path / "registry")
    model = fake_saved_model(tmp_path / "model")
    reg.publish("m", model, {})
    proc = start_slow_push(reg, model)
    try:
        assert reg.damaged("m") == []
        with pytest.raises(RegistryError, match="a publish of m is in progress"):
            reg.gc("m")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert [os.path.basename(d.path)[:9] for d in reg.damaged("m")] == [".staging-"]

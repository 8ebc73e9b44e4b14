"""The baseline is the model published now: the registry's newest version with this code's model
contract, copied into the run's Model artifact; nothing on a first run."""

import os

from helpers import fake_saved_model

from components.baseline import baseline_record, resolve_baseline
from components.contract import CONTRACT_FILE, SERVING_DIR, model_contract, write_contract
from components.registry import Registry


def publish(registry, tmp_path, tag, contract=True, payload=None):
    model = fake_saved_model(tmp_path / f"export-{tag}", payload=payload or tag.encode() * 100)
    if contract:
        write_contract(model)
    return registry.publish("movies", model, {"tag": tag})


def test_nothing_published_means_no_baseline(tmp_path):
    out = str(tmp_path / "baseline")
    record = resolve_baseline(str(tmp_path / "registry"), "movies", "", out)
    assert record["found"] is False and "nothing published as movies" in record["reason"]
    assert baseline_record(out) == record
    assert not os.path.exists(os.path.join(out, SERVING_DIR))


def test_the_newest_version_is_copied_in_with_its_contract(tmp_path):
    reg = Registry(str(tmp_path / "registry"))
    publish(reg, tmp_path, "a")
    publish(reg, tmp_path, "b")
    out = str(tmp_path / "baseline")
    record = resolve_baseline(reg.root, "movies", "", out)
    assert record["found"] is True and record["version"] == 2
    with open(os.path.join(out, SERVING_DIR, "saved_model.pb"), "rb") as f:
        assert f.read() == b"b" * 100  # version 2's files, not version 1's
    assert model_contract(out) == 2 and os.path.isfile(
        os.path.join(out, SERVING_DIR, CONTRACT_FILE)
    )
    assert baseline_record(out)["version"] == 2
    assert baseline_record(str(tmp_path / "registry")) is None  # not a baseline artifact


def test_after_a_rollback_the_rolled_back_model_is_the_baseline(tmp_path):
    reg = Registry(str(tmp_path / "registry"))
    publish(reg, tmp_path, "a")
    publish(reg, tmp_path, "b")
    assert reg.rollback("movies", 1) == 3
    out = str(tmp_path / "baseline")
    assert resolve_baseline(reg.root, "movies", "", out)["version"] == 3
    with open(os.path.join(out, SERVING_DIR, "saved_model.pb"), "rb") as f:
        assert f.read() == b"a" * 100


def test_a_published_model_under_another_contract_is_not_compared_with(tmp_path):
    reg = Registry(str(tmp_path / "registry"))
    publish(reg, tmp_path, "old", contract=False)  # exported before model contracts
    out = str(tmp_path / "baseline")
    record = resolve_baseline(reg.root, "movies", "", out)
    assert record["found"] is False and record["version"] == 1
    assert "model contract None, this code 2" in record["reason"]
    assert not os.path.exists(os.path.join(out, SERVING_DIR))

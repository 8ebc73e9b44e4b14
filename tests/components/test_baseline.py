"""The baseline resolver skips blessed models exported under another model contract."""

import os

from tfx.types import standard_artifacts

from components.baseline import (
    CONTRACT_FILE,
    LatestCompatibleBlessedModelStrategy,
    model_contract,
    write_contract,
)


def model(tmp_path, artifact_id, contract):
    m = standard_artifacts.Model()
    m.id = artifact_id
    m.uri = str(tmp_path / f"model{artifact_id}")
    serving = os.path.join(m.uri, "Format-Serving")
    os.makedirs(serving)
    if contract:
        write_contract(serving)
    return m


def blessing(model_id, blessed=1):
    b = standard_artifacts.ModelBlessing()
    b.set_int_custom_property("current_model_id", model_id)
    b.set_int_custom_property("blessed", blessed)
    return b


def test_the_latest_blessed_model_with_this_contract_is_the_baseline(tmp_path):
    old = model(tmp_path, 7, contract=False)  # exported before contracts: newest, blessed
    current = model(tmp_path, 5, contract=True)
    unblessed = model(tmp_path, 6, contract=True)
    assert model_contract(old.uri) is None and model_contract(current.uri) == 2
    assert os.path.isfile(os.path.join(current.uri, "Format-Serving", CONTRACT_FILE))
    strategy = LatestCompatibleBlessedModelStrategy()
    inputs = {
        "model": [old, current, unblessed],
        "model_blessing": [blessing(7), blessing(5), blessing(6, blessed=0)],
    }
    result = strategy.resolve_artifacts(None, inputs)
    assert [m.id for m in result["model"]] == [5]
    assert result["model_blessing"][0].get_int_custom_property("current_model_id") == 5
    # Only older models: no baseline, as on a first run.
    inputs = {"model": [old], "model_blessing": [blessing(7)]}
    assert strategy.resolve_artifacts(None, inputs) == {"model": [], "model_blessing": []}

"""The EvalConfig generated from the movies and digits specs."""

import pytest
import tensorflow_model_analysis as tfma
from conftest import DIGITS_FIXTURE_SPEC, MOVIES_FIXTURE_SPEC, REPO

from pipeline.evaluation.eval_config import build_eval_config
from pipeline.spec import Spec, SpecError, load_spec


def specs_by_head(config):
    out = {}
    for s in config.metrics_specs:
        (name,) = s.output_names
        out.setdefault(name, []).append(s)
    return out


def test_movies_eval_config():
    spec = load_spec(f"{REPO}/data/movies/movies.yaml")
    config = build_eval_config(spec)
    (model,) = config.model_specs
    # oscar is calibrated: its probabilities before the temperature are judged on its label too.
    assert dict(model.label_keys) == {
        "meter": "meter_label",
        "oscar": "oscar_label",
        "genre": "genre_label",
        "oscar_uncalibrated": "oscar_label",
    }
    assert model.example_weight_keys["oscar_uncalibrated"] == "oscar_label_present"
    assert list(model.preprocessing_function_names) == ["transform_features"]
    assert model.signature_name == "serving_default"
    heads = specs_by_head(config)
    assert set(heads) == {"meter", "oscar", "genre", "oscar_uncalibrated"}
    (before,) = heads["oscar_uncalibrated"]
    assert list(before.model_names) == [tfma.CANDIDATE_KEY]  # never asked of a baseline
    assert {m.class_name for m in before.metrics} == {
        "Calibration",
        "CalibrationPlot",
        "WeightedExampleCount",
    }
    assert not any(m.per_slice_thresholds or m.HasField("threshold") for m in before.metrics)
    meter = {m.class_name: m for m in heads["meter"][0].metrics}
    assert {
        "MeanAbsoluteError",
        "RootMeanSquaredError",
        "MeanLabel",
        "MeanPrediction",
        "Calibration",
    } <= set(meter)
    (gate,) = meter["MeanAbsoluteError"].per_slice_thresholds
    assert list(gate.slicing_specs) == [tfma.SlicingSpec()]  # gates judge the overall slice
    mae = gate.threshold
    assert mae.value_threshold.upper_bound.value == 22.0
    assert mae.change_threshold.direction == tfma.MetricDirection.LOWER_IS_BETTER
    assert mae.change_threshold.absolute.value == 1.0
    oscar = {m.class_name: m for m in heads["oscar"][0].metrics}
    assert {
        "AUC",
        "AUCPrecisionRecall",
        "Precision",
        "Recall",
        "BinaryAccuracy",
        "Calibration",
        "ExampleCount",
    } <= set(oscar)
    auc = oscar["AUC"].per_slice_thresholds[0].threshold
    assert auc.value_threshold.lower_bound.value == 0.8
    assert auc.change_threshold.direction == tfma.MetricDirection.HIGHER_IS_BETTER
    assert auc.change_threshold.absolute.value == -0.02
    macro, per_label = heads["genre"]
    assert macro.aggregate.macro_average and len(macro.aggregate.class_weights) == 21
    assert macro.metrics[0].class_name == "MultilabelAUC" and macro.metrics[0].per_slice_thresholds
    assert (
        macro.metrics[0].module
        == per_label.metrics[0].module
        == "pipeline.evaluation.multilabel_metrics"
    )
    assert list(per_label.binarize.class_ids.values) == list(range(21))
    assert not any(m.per_slice_thresholds or m.HasField("threshold") for m in per_label.metrics)
    slices = [list(s.feature_keys) for s in config.slicing_specs]
    assert slices == [[], ["slice_mpaa"], ["slice_decade"]]
    tfma.utils.verify_eval_config(
        tfma.utils.update_eval_config_with_defaults(config, has_baseline=True)
    )


def test_digits_eval_config():
    config = build_eval_config(load_spec(DIGITS_FIXTURE_SPEC))
    heads = specs_by_head(config)
    digit = {m.class_name: m for m in heads["digit"][0].metrics}
    assert {
        "SparseCategoricalAccuracy",
        "SparseTopKCategoricalAccuracy",
        "MultiClassConfusionMatrixPlot",
    } <= set(digit)
    accuracy = digit["SparseCategoricalAccuracy"].per_slice_thresholds[0].threshold
    assert accuracy.value_threshold.lower_bound.value == 0.5
    assert '"k": 3' in digit["SparseTopKCategoricalAccuracy"].config
    assert [list(s.feature_keys) for s in config.slicing_specs] == [[]]


def test_a_spec_without_gates_is_refused_and_gates_name_known_metrics():
    raw = load_spec(MOVIES_FIXTURE_SPEC).to_dict()
    for o in raw["outputs"]:
        o["gates"] = []
    with pytest.raises(SpecError, match="no head has gates"):
        build_eval_config(Spec.from_dict(raw))
    raw["outputs"][0]["gates"] = [{"metric": "auc", "min": 0.5}]
    with pytest.raises(SpecError, match=r"outputs\[0\].gates\[0\].metric: 'auc' is not among"):
        Spec.from_dict(raw)


def test_a_gate_that_beats_the_boosted_trees_is_a_change_threshold_against_them_only():
    """`beats: gbdt` gates become TFMA change thresholds in the rival's config (where the trees
    are TFMA's baseline model), never in the Evaluator's; the other gates stay there alone."""
    raw = load_spec(MOVIES_FIXTURE_SPEC).to_dict()
    raw["evaluation"] = {"baselines": ["gbdt"]}
    raw["outputs"][1]["gates"].append({"metric": "auc", "beats": "gbdt", "max_regression": 0.01})
    spec = Spec.from_dict(raw)
    main, rival = build_eval_config(spec), build_eval_config(spec, rival="gbdt")

    def thresholds(config, head):
        return {
            m.class_name: t.threshold
            for s in specs_by_head(config)[head]
            for m in s.metrics
            for t in m.per_slice_thresholds
        }

    (change,) = thresholds(rival, "oscar").values()
    assert not change.HasField("value_threshold")
    assert change.change_threshold.direction == tfma.MetricDirection.HIGHER_IS_BETTER
    assert change.change_threshold.absolute.value == pytest.approx(-0.01)
    assert thresholds(rival, "meter") == {} and thresholds(rival, "genre") == {}
    (published,) = thresholds(main, "oscar").values()  # the value gate with max_regression
    assert published.value_threshold.lower_bound.value == pytest.approx(0.2)
    assert published.change_threshold.absolute.value == pytest.approx(-0.5)
    # Every metric of every head is computed for both models in the rival's config.
    assert [len(s.metrics) for s in rival.metrics_specs] == [
        len(s.metrics) for s in main.metrics_specs
    ]

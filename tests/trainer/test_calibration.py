"""Temperature scaling on the movies fixture's real transformed examples: a deliberately
over-confident oscar head gets a temperature above 1 that lowers its log loss on rows it was not
fitted on; the fitted temperature lives in the model (what the export serves), and train()
reports the validation log loss and ECE before and after."""

import numpy as np
import pytest

from pipeline.spec import Spec, SpecError
from preprocessing import HEAD_TYPES
from trainer.calibration import (
    calibrate,
    expected_calibration_error,
    fit_temperature,
    head_logits,
    log_loss,
    scaled_probabilities,
)
from trainer.data import make_dataset
from trainer.model import build_model, compile_model


def calibrated_spec(spec, heads=("oscar", "genre")):
    raw = spec.to_dict()
    for o in raw["outputs"]:
        if o["name"] in heads:
            o["calibration"] = "temperature"
    return Spec.from_dict(raw)


@pytest.fixture(scope="module")
def over_confident(movies_prepared):
    """oscar and genre calibrated; one epoch, then oscar's logits x8 (over-confident on
    purpose), its logits on the eval rows, and the temperatures fitted on the training rows."""
    p = movies_prepared
    spec = calibrated_spec(p.spec)
    model = compile_model(build_model(spec, p.info), spec, p.info)
    model.fit(
        make_dataset(p.train_files, spec, p.info, 32, shuffle=True, seed=1), epochs=1, verbose=0
    )
    layer = model.get_layer("oscar_logits")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel * 8, bias * 8])
    heads = [h for h in spec.outputs if h.name == "oscar"]
    held_out = head_logits(model, spec, p.info, p.eval_files, 64, heads)["oscar"]
    report = calibrate(model, spec, p.info, p.train_files, 64)  # fitted on other rows
    return spec, model, held_out, report


def test_an_over_confident_head_is_cooled_and_its_held_out_log_loss_falls(
    movies_prepared, over_confident
):
    p = movies_prepared
    spec, model, held_out, report = over_confident
    t = float(model.get_layer("oscar").temperature.numpy())  # in the model: what it serves
    assert t > 2 and report["oscar"]["temperature"] == pytest.approx(t, rel=1e-4), report
    logits, labels, weights = held_out
    before = log_loss(scaled_probabilities(logits, 1.0, "sigmoid"), labels, weights, "sigmoid")
    after = log_loss(scaled_probabilities(logits, t, "sigmoid"), labels, weights, "sigmoid")
    assert after < before, (before, after)
    assert report["oscar"]["log_loss_after"] < report["oscar"]["log_loss_before"]
    # Fitted on its own log loss, a head never gets worse there (ECE may move either way when a
    # head is calibrated already, as genre nearly is).
    assert report["genre"]["log_loss_after"] <= report["genre"]["log_loss_before"] + 1e-6
    # The model's own output is now the calibrated probability.
    x = next(iter(make_dataset(p.eval_files, spec, p.info, 8)))[0]
    served = model(x, training=False)["oscar"].numpy()
    np.testing.assert_allclose(served, scaled_probabilities(logits[:8], t, "sigmoid"), atol=1e-5)


def test_the_fit_recovers_a_known_temperature_and_ece_sees_over_confidence():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, size=(4000, 3))
    probs = scaled_probabilities(true_logits, 1.0, "softmax")
    labels = np.array([rng.choice(3, p=row) for row in probs])
    weights = np.ones(len(labels))
    t = fit_temperature(true_logits * 3, labels, weights, "softmax")  # 3x too confident
    assert t == pytest.approx(3.0, rel=0.15)
    hot = scaled_probabilities(true_logits * 3, 1.0, "softmax")
    cooled = scaled_probabilities(true_logits * 3, t, "softmax")
    assert expected_calibration_error(hot, labels, weights, "softmax") > 0.1
    assert expected_calibration_error(cooled, labels, weights, "softmax") < 0.03


def test_a_regression_head_cannot_be_calibrated(movies_prepared):
    raw = movies_prepared.spec.to_dict()
    raw["outputs"][0]["calibration"] = "temperature"
    with pytest.raises(SpecError, match=r"outputs\[0\].calibration: a regression head has no"):
        Spec.from_dict(raw)
    assert HEAD_TYPES["binary"].activation == "sigmoid"


def test_training_reports_each_calibrated_head_s_temperature_and_ece(movies_prepared):
    """train(): the served model carries the fitted temperatures; the report has them with the
    log loss and ECE before and after on the validation rows."""
    import dataclasses

    from trainer.calibration import owner
    from trainer.train import train

    p = movies_prepared
    spec = calibrated_spec(p.spec)
    spec = dataclasses.replace(spec, training={**spec.training, "epochs": 1})
    result = train(spec, p.tft_output, p.train_files, p.eval_files)
    calibration = result.report["calibration"]
    assert set(calibration) == {"oscar", "genre"}
    for head, c in calibration.items():
        layer_t = float(owner(result.model, head).get_layer(head).temperature.numpy())
        assert c["temperature"] == pytest.approx(layer_t, rel=1e-4)
        assert c["log_loss_after"] <= c["log_loss_before"] + 1e-6
        assert 0 <= c["ece_after"] <= 1 and c["examples"] > 0


def test_a_head_served_from_its_own_epoch_is_calibrated_in_that_epoch_s_copy(movies_prepared):
    """With per-head selection the served model reads each head from a copy of the network at
    its best epoch (trainer/selection.py): the temperature is fitted on and set in the copy the
    head reads, and the served output is calibrated."""
    from types import SimpleNamespace

    from trainer.calibration import owner
    from trainer.selection import selected

    p = movies_prepared
    spec = calibrated_spec(p.spec, heads=("oscar",))
    model = compile_model(build_model(spec, p.info), spec, p.info)
    first = model.get_weights()
    layer = model.get_layer("oscar_logits")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel * 8 + 0.5, bias])  # "epoch 2": oscar's logits badly scaled
    second = model.get_weights()
    selection = SimpleNamespace(
        best_epoch={"meter": 0, "oscar": 1, "genre": 0}, snapshots={0: first, 1: second}
    )
    served = selected(model, selection, spec, p.info, build_model)
    assert owner(served, "oscar") is not served  # a copy of the network
    report = calibrate(served, spec, p.info, p.train_files, 64)
    t = float(owner(served, "oscar").get_layer("oscar").temperature.numpy())
    assert report["oscar"]["temperature"] == pytest.approx(t, rel=1e-4) and abs(t - 1) > 0.05
    assert report["oscar"]["log_loss_after"] < report["oscar"]["log_loss_before"]
    x = next(iter(make_dataset(p.eval_files, spec, p.info, 8)))[0]
    (logits, _, _) = head_logits(served, spec, p.info, p.eval_files, 8, [spec.outputs[1]])["oscar"]
    np.testing.assert_allclose(
        served(x, training=False)["oscar"].numpy(),
        scaled_probabilities(logits[:8], t, "sigmoid"),
        atol=1e-5,
    )


def test_tfma_judges_a_calibrated_head_before_and_after_its_temperature(
    movies_prepared, over_confident, tmp_path
):
    """The export serves oscar's probabilities before its temperature as `oscar_uncalibrated`;
    a real TFMA run of the Evaluator's config, against a published model that predates that
    output (TFMA's baseline), measures Calibration and the calibration plot on both sides of
    the temperature for the candidate only, and the plots' ECE falls."""
    import tensorflow as tf
    import tensorflow_model_analysis as tfma
    from apache_beam.options.pipeline_options import PipelineOptions
    from conftest import MOVIES_FIXTURE_CSV, read_csv_columns, tft_examples
    from tft_harness import serialize

    from pipeline.evaluation import plots
    from pipeline.evaluation.eval_config import build_eval_config
    from trainer.export import export

    p = movies_prepared
    spec, candidate, held_out, _ = over_confident
    models = {"candidate": candidate, "baseline": build_model(p.spec, p.info)}  # untrained
    t = float(candidate.get_layer("oscar").temperature.numpy())
    for name, model_spec in (("candidate", spec), ("baseline", p.spec)):
        # What TFMA reads (serving_default, transform_features), as for the boosted rival.
        export(models[name], p.tft_output, model_spec, p.info, str(tmp_path / name), False)

    # The eval rows (the fixture's last quarter of 200), raw, as the Evaluator reads them.
    instances, feature_spec = tft_examples(*read_csv_columns(MOVIES_FIXTURE_CSV, 200))
    records = [serialize(i, feature_spec) for i in instances[150:200]]
    data = str(tmp_path / "eval.tfrecord")
    with tf.io.TFRecordWriter(data) as writer:
        for r in records:
            writer.write(r)
    served = tf.saved_model.load(str(tmp_path / "candidate")).signatures["serving_default"](
        examples=tf.constant(records)
    )
    logits = held_out[0]
    np.testing.assert_allclose(
        served["oscar_uncalibrated"].numpy(),
        scaled_probabilities(logits, 1.0, "sigmoid"),
        atol=1e-4,
    )
    np.testing.assert_allclose(
        served["oscar"].numpy(), scaled_probabilities(logits, t, "sigmoid"), atol=1e-5
    )

    config = tfma.utils.update_eval_config_with_defaults(build_eval_config(spec), has_baseline=True)
    shared = [
        tfma.default_eval_shared_model(
            str(tmp_path / name),
            eval_config=config,
            model_name=getattr(tfma, f"{name.upper()}_KEY"),
        )
        for name in ("candidate", "baseline")
    ]
    out = str(tmp_path / "evaluation")
    tfma.run_model_analysis(
        eval_shared_model=shared,
        eval_config=config,
        data_location=data,
        output_path=out,
        pipeline_options=PipelineOptions(["--direct_running_mode=in_memory"]),
    )
    metrics = {}
    for record in tfma.load_metrics(out):
        if not record.slice_key.single_slice_keys:
            for kv in record.metric_keys_and_values:
                if not kv.key.is_diff:
                    metrics[kv.key.model_name, kv.key.output_name, kv.key.name] = (
                        kv.value.double_value.value
                    )
    assert ("candidate", "oscar_uncalibrated", "calibration") in metrics
    assert not any(k[1] == "oscar_uncalibrated" for k in metrics if k[0] == "baseline")
    buckets = {}
    for record in tfma.load_plots(out):
        if not record.slice_key.single_slice_keys:
            for kv in record.plot_keys_and_values:
                if kv.value.HasField("calibration_histogram_buckets"):
                    buckets[kv.key.model_name, kv.key.output_name] = (
                        kv.value.calibration_histogram_buckets.buckets
                    )
    _, after, before = plots.calibration(
        buckets["candidate", "oscar"], "oscar", before=buckets["candidate", "oscar_uncalibrated"]
    )
    print(f"T {t:.3f}, ECE {before:.4f} -> {after:.4f}", sorted(metrics.items()))
    assert after < before

"""The per-label multilabel metrics: exact against brute force, and inside a real TFMA run."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from apache_beam.options.pipeline_options import PipelineOptions
from tensorflow_model_analysis.metrics import metric_types

from pipeline.evaluation import multilabel_metrics

CLASSES = 6


def synthetic(n=600, seed=0):
    """Labels and probabilities, some concentrated near 0 (rare labels); label 5 never occurs."""
    rng = np.random.default_rng(seed)
    rates = np.array([0.4, 0.2, 0.05, 0.02, 0.3, 0.0])
    y = (rng.random((n, CLASSES)) < rates).astype(np.float64)
    logits = rng.normal(-4.0, 1.5, (n, CLASSES)) + 1.5 * y
    logits[:, 0] = rng.normal(0, 1, n) + y[:, 0]  # one label spread around 0.5
    p = 1 / (1 + np.exp(-logits))
    p[:10, 1] = p[10:20, 1]  # some ties
    return y, p


def exact_auc(y, p):
    pos, neg = p[y == 1], p[y == 0]
    if not len(pos) or not len(neg):
        return 0.0
    return float(((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean())


def run_combiner(metric, y, p):
    sub_keys = [metric_types.SubKey(class_id=i) for i in range(CLASSES)]
    (computation,) = metric.computations(sub_keys=sub_keys, model_names=[""], output_names=[""])
    combiner = computation.combiner
    # Two halves merged, as Beam does across bundles.
    accs = []
    for part in (slice(0, len(y) // 2), slice(len(y) // 2, None)):
        acc = combiner.create_accumulator()
        for yi, pi in zip(y[part], p[part], strict=True):
            element = metric_types.StandardMetricInputs(
                labels=yi, predictions=pi, example_weights=np.array([1.0])
            )
            acc = combiner.add_input(acc, element)
        accs.append(acc)
    out = combiner.extract_output(combiner.merge_accumulators(accs))
    return [out[k] for k in computation.keys]


def test_auc_matches_the_exact_mann_whitney_statistic():
    y, p = synthetic()
    ours = run_combiner(multilabel_metrics.MultilabelAUC(), y, p)
    exact = [exact_auc(y[:, c], p[:, c]) for c in range(CLASSES)]
    assert ours[:5] == pytest.approx(exact[:5], abs=2e-3)
    assert ours[5] == 0.0  # no positive in the slice: 0, as TFMA's AUC
    assert 0.6 < ours[0] < 0.9 and ours[3] > 0.5


def test_precision_and_recall_at_one_half_are_exact():
    y, p = synthetic()
    predicted = p > 0.5
    tp = (predicted * y).sum(axis=0)
    precision = run_combiner(multilabel_metrics.MultilabelPrecision(), y, p)
    recall = run_combiner(multilabel_metrics.MultilabelRecall(), y, p)
    for c in range(CLASSES):
        assert precision[c] == pytest.approx(
            tp[c] / predicted[:, c].sum() if predicted[:, c].any() else 0.0
        )
        if y[:, c].any():
            assert recall[c] == pytest.approx(tp[c] / y[:, c].sum())
        else:  # no positive: NaN, as TFMA's Recall
            assert np.isnan(recall[c])
    assert precision[0] > 0 and recall[0] > 0


def test_a_metric_without_class_ids_is_refused():
    with pytest.raises(ValueError, match="binarize.class_ids"):
        multilabel_metrics.MultilabelAUC().computations(sub_keys=None)


def write_examples(path, y, p):
    with tf.io.TFRecordWriter(path) as writer:
        for yi, pi in zip(y, p, strict=True):
            feature = {
                "label": tf.train.Feature(float_list=tf.train.FloatList(value=yi)),
                "prediction": tf.train.Feature(float_list=tf.train.FloatList(value=pi)),
            }
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            writer.write(example.SerializeToString())


def test_in_tfma_they_agree_with_tfmas_own_metrics_and_gate_the_macro_average(tmp_path):
    """A real TFMA run on predictions stored next to the labels (no model needed)."""
    y, p = synthetic(400, seed=1)
    data = str(tmp_path / "examples.tfrecord")
    write_examples(data, y, p)
    present = list(range(CLASSES))

    def specs(auc, precision, recall, module=""):
        metrics = [tfma.MetricConfig(class_name=c, module=module) for c in (auc, precision, recall)]
        gate = tfma.MetricThreshold(
            value_threshold=tfma.GenericValueThreshold(lower_bound={"value": 0.99})
        )
        macro = tfma.MetricsSpec(
            metrics=[
                tfma.MetricConfig(
                    class_name=auc,
                    module=module,
                    per_slice_thresholds=[
                        tfma.PerSliceMetricThreshold(
                            slicing_specs=[tfma.SlicingSpec()], threshold=gate
                        )
                    ],
                )
            ],
            aggregate=tfma.AggregationOptions(
                macro_average=True, class_weights={i: 1.0 for i in present}
            ),
        )
        per_label = tfma.MetricsSpec(
            metrics=metrics, binarize=tfma.BinarizationOptions(class_ids={"values": present})
        )
        return [macro, per_label]

    def run(metrics_specs, name):
        config = tfma.EvalConfig(
            model_specs=[tfma.ModelSpec(label_key="label", prediction_key="prediction")],
            metrics_specs=metrics_specs,
            slicing_specs=[tfma.SlicingSpec()],
        )
        tfma.run_model_analysis(
            eval_config=config,
            data_location=data,
            output_path=str(tmp_path / name),
            pipeline_options=PipelineOptions(["--direct_running_mode=in_memory"]),
        )
        values = {}
        for record in tfma.load_metrics(str(tmp_path / name)):
            for kv in record.metric_keys_and_values:
                class_id = kv.key.sub_key.class_id.value if kv.key.HasField("sub_key") else None
                macro = kv.key.HasField("aggregation_type")
                values[kv.key.name, class_id, macro] = kv.value.double_value.value
        return values, tfma.load_validation_result(str(tmp_path / name))

    ours, ours_validation = run(
        specs(
            "MultilabelAUC",
            "MultilabelPrecision",
            "MultilabelRecall",
            "pipeline.evaluation.multilabel_metrics",
        ),
        "ours",
    )
    tfmas, tfma_validation = run(specs("AUC", "Precision", "Recall"), "tfma")
    assert {k for k in ours if k[0] != "example_count"} == set(tfmas)
    for c in present:
        for name in ("auc", "precision", "recall"):
            a, b = ours[name, c, False], tfmas[name, c, False]
            assert a == pytest.approx(b, abs=0.01 if name == "auc" else 1e-9, nan_ok=True), (
                c,
                name,
            )
    assert ours["auc", None, True] == pytest.approx(
        np.mean([exact_auc(y[:, c], p[:, c]) for c in present]), abs=2e-3
    )
    # The gate (macro AUC >= 0.99) fails for both, on the same key.
    assert not ours_validation.validation_ok and not tfma_validation.validation_ok
    failed = lambda v: {  # noqa: E731
        (f.metric_key.name, f.metric_key.HasField("aggregation_type"))
        for slice_failure in v.metric_validations_per_slice
        for f in slice_failure.failures
    }
    assert failed(ours_validation) == failed(tfma_validation) == {("auc", True)}

"""`make bench`: where the time and memory go, and how close training and serving get to their
limits. Writes bench/results/results.json, summary.md and PNG plots. Every figure that is a
ratio is measured side by side in this one run (the machines are noisy).

python -m bench.run [--scales 1,10,100]
    [--skip scaling,beam,input,serving,quality,partial,tuning,evaluator,penguin,before_after]
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from bench.measure import RssSampler, component_times, scale_movies  # noqa: E402
from bench.quality import (
    SEEDS,
    default_settings_spec,
    mechanisms,
    mechanisms_lines,
    per_head_epochs_lines,
    summary_lines,
)
from pipeline import env as _env  # noqa: F401  (before TensorFlow)
from pipeline.runners.beam import BeamOptions, beam_args
from trainer.compare import primary_metric

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "bench", "results")
WORK = os.path.join(RESULTS, "tmp")
MOVIES_SPEC = os.path.join(REPO, "data", "movies", "movies.yaml")
MOVIES_CSV = os.path.join(REPO, "data", "movies", "movies.csv")
DIGITS_SPEC = os.path.join(REPO, "data", "digits", "digits.yaml")
# Our default (the DirectRunner in one process) is Beam's default: no argument. The same mode
# spelled out, as TFX's penguin example and our code before issue 15 passed it (TFX then stages
# an sdist of itself before every Beam component).
IN_MEMORY = beam_args(BeamOptions())
IN_MEMORY_SPELLED_OUT = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
MULTI_PROCESSING = beam_args(BeamOptions(direct_mode="multi_processing", workers=2))
# "Before" for the fixed-cost goals (issue 15): the code as it was when they were set.
BEFORE_REF = "3282fba"


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def count_rows(path):
    with open(path, encoding="utf-8") as f:
        return sum(1 for _ in csv.reader(f)) - 1


def scaled_spec(factor: float) -> tuple[str, int]:
    """A copy of the movies spec reading movies x factor; (spec path, rows)."""
    folder = os.path.join(WORK, f"movies_x{factor:g}")
    data = MOVIES_CSV
    if factor != 1:
        data = os.path.join(folder, "movies.csv")
        if not os.path.exists(data):
            log(f"writing movies x{factor}")
            scale_movies(MOVIES_CSV, factor, data)
    os.makedirs(folder, exist_ok=True)
    with open(MOVIES_SPEC) as f:
        raw = yaml.safe_load(f)
    raw["name"] = f"movies_x{factor:g}".replace(".", "_")
    raw["data"]["path"] = data
    path = os.path.join(folder, "spec.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(raw, f)
    return path, count_rows(data)


def before_tree(ref=BEFORE_REF) -> str:
    """This repository's files at `ref` (git archive), to run the code as it was side by side
    with today's: the same .venv, the old tree first on the import path."""
    folder = os.path.join(WORK, f"code-{ref}")
    if not os.path.exists(os.path.join(folder, "pipeline")):
        os.makedirs(folder, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", ref], cwd=REPO, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    return folder


def spec_variant(spec_path: str, suffix: str, change) -> str:
    """A copy of the spec beside it (`<name>-<suffix>.yaml`), `change` applied to its dict."""
    with open(spec_path) as f:
        raw = yaml.safe_load(f)
    change(raw)
    path = os.path.splitext(spec_path)[0] + f"-{suffix}.yaml"
    with open(path, "w") as f:
        yaml.safe_dump(raw, f)
    return path


def without_rival(spec_path: str) -> str:
    """The spec with `evaluation: {baselines: []}`: no boosted rival trained and evaluated."""
    return spec_variant(spec_path, "no-rival", lambda raw: raw.update(evaluation={"baselines": []}))


def spec_before(spec_path: str) -> str:
    """The spec as the code at BEFORE_REF reads it: that code knew two hash splits, train and
    eval (its Trainer stopped early on eval), so the validation buckets go back to train; and no
    `evaluation:` section (it trained no rival)."""
    with open(spec_path) as f:
        raw = yaml.safe_load(f)
    raw.pop("evaluation", None)
    split = raw["data"].get("split") or {}
    if "validation" in split:
        raw["data"]["split"] = {
            "train": split["train"] + split["validation"],
            "eval": split["eval"],
        }
    path = os.path.splitext(spec_path)[0] + f"-{BEFORE_REF}.yaml"
    with open(path, "w") as f:
        yaml.safe_dump(raw, f)
    return path


def run_pipeline(kind, source, out, beam, train_steps=None, tree=REPO) -> dict:
    """Runs one pipeline in a child process (with the code in `tree`); per-component seconds
    and peak RSS (MB)."""
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "bench.pipeline_run", kind, source, out]
    cmd += [f"--beam={a}" for a in beam]
    if train_steps:
        cmd += ["--train-steps", str(train_steps)]
    os.makedirs(out, exist_ok=True)
    logfile = open(os.path.join(out, "run.log"), "w")  # noqa: SIM115
    start = time.time()
    env = dict(os.environ, PYTHONPATH=tree)
    child = subprocess.Popen(
        cmd, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=logfile, text=True
    )
    with RssSampler(child.pid) as sampler:
        stdout, _ = child.communicate()
    total = time.time() - start
    logfile.close()
    if child.returncode != 0:
        raise RuntimeError(f"{kind} pipeline failed; see {out}/run.log")
    metadata = [
        line.split(" ", 1)[1] for line in stdout.splitlines() if line.startswith("METADATA")
    ]
    components = {}
    for name, (t0, t1) in component_times(metadata[0]).items():
        components[name] = {
            "seconds": round(t1 - t0, 2),
            "peak_rss_mb": round(sampler.peak(t0, t1) / 2**20, 1),
        }
    return {
        "total_seconds": round(total, 1),
        "peak_rss_mb": round(max((r for _, r in sampler.samples), default=0) / 2**20, 1),
        "components": components,
        "metadata": metadata[0],
    }


def trainer_report(metadata_path) -> dict:
    from pipeline.evaluation.report import load_training_report
    from pipeline.runners.local import latest_run_outputs

    outputs = latest_run_outputs(metadata_path)
    return load_training_report(outputs["Trainer"]["model_run"][0].uri)


# -- 1. scaling ---------------------------------------------------------------------------------
def bench_scaling(scales) -> dict:
    out = {}
    for factor in scales:
        spec_path, rows = scaled_spec(factor)
        log(f"scaling: movies x{factor:g} ({rows} rows), full pipeline, no cache")
        result = run_pipeline("mimo", spec_path, os.path.join(WORK, f"run_x{factor:g}"), IN_MEMORY)
        report = trainer_report(result["metadata"])
        result.update(rows=rows, epochs_run=report["epochs_run"])
        trainer = result["components"]["Trainer"]
        trainer["seconds_per_epoch"] = round(trainer["seconds"] / report["epochs_run"], 2)
        out[f"{factor:g}"] = result
        log(f"  {result['total_seconds']} s in all")
    return out


# -- 1b. the Evaluator's multilabel metrics: per label at once vs TFMA's, binarized per class ----
def per_label_heads(spec) -> list[str]:
    """Heads whose TFMA metrics are our own per-label ones (pipeline/evaluation/...)."""
    return [
        h.name
        for h in spec.outputs
        if any(h.head_type.metric_table[m].tfma_module for m in h.metrics)
    ]


TFMA_OWN = {
    "MultilabelAUC": "AUC",
    "MultilabelPrecision": "Precision",
    "MultilabelRecall": "Recall",
}


def _multilabel_values(path, heads) -> dict:
    import tensorflow_model_analysis as tfma

    values = {}
    for record in tfma.load_metrics(path):
        for kv in record.metric_keys_and_values:
            k = kv.key
            if k.output_name in heads and k.name in ("auc", "precision", "recall"):
                class_id = k.sub_key.class_id.value if k.HasField("sub_key") else None
                key = (str(record.slice_key), k.output_name, k.name, class_id)
                values[key] = kv.value.double_value.value
    return values


def bench_evaluator(metadata_path) -> dict:
    """Both EvalConfigs on the 1x run's model and eval split, back to back, no thresholds."""
    import tensorflow_model_analysis as tfma
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.evaluation.eval_config import build_eval_config
    from pipeline.runners.local import latest_run_outputs
    from pipeline.spec import load_spec

    outputs = latest_run_outputs(metadata_path)
    model = os.path.join(outputs["Trainer"]["model"][0].uri, "Format-Serving")
    data = os.path.join(outputs["CsvExampleGen"]["examples"][0].uri, "Split-eval", "*")
    spec = load_spec(scaled_spec(1)[0])
    heads = per_label_heads(spec)
    out, values = {}, {}
    for variant in ("tfma_binarized", "per_label"):
        config = build_eval_config(spec)
        for metrics_spec in config.metrics_specs:
            for metric in metrics_spec.metrics:
                del metric.per_slice_thresholds[:]  # change thresholds would need a baseline
                if variant == "tfma_binarized" and metric.class_name in TFMA_OWN:
                    metric.class_name, metric.module = TFMA_OWN[metric.class_name], ""
        path = os.path.join(WORK, f"eval_{variant}")
        log(f"evaluator: {variant}")
        t = time.perf_counter()
        tfma.run_model_analysis(
            eval_shared_model=tfma.default_eval_shared_model(model, eval_config=config),
            eval_config=config,
            data_location=data,
            file_format="tfrecords",
            output_path=path,
            pipeline_options=PipelineOptions(IN_MEMORY),
        )
        out[f"{variant}_seconds"] = round(time.perf_counter() - t, 1)
        values[variant] = _multilabel_values(path, heads)
    a, b = values["tfma_binarized"], values["per_label"]
    diffs = {}
    for key in a.keys() & b.keys():
        if not (np.isnan(a[key]) and np.isnan(b[key])):
            diffs[key[2]] = max(diffs.get(key[2], 0.0), abs(a[key] - b[key]))
    overall = [k for k in a if k[0] == "" and k[2] == "auc" and k[3] is None]
    out.update(
        per_label_over_tfma_time=round(out["per_label_seconds"] / out["tfma_binarized_seconds"], 3),
        same_keys=a.keys() == b.keys(),
        values=len(a),
        max_abs_difference=diffs,
        macro_auc_overall={"tfma_binarized": a[overall[0]], "per_label": b[overall[0]]}
        if overall
        else None,
    )
    return out


# -- 4. Beam: in_memory vs multi_processing -------------------------------------------------------
def bench_beam(scaling) -> dict:
    spec_path, rows = scaled_spec(1)
    log("beam: movies x1 with multi_processing (2 workers); Trainer capped at 50 steps")
    multi = run_pipeline(
        "mimo", spec_path, os.path.join(WORK, "run_multi"), MULTI_PROCESSING, train_steps=50
    )
    single = scaling["1"]
    out = {"rows": rows}
    for name in ("CsvExampleGen", "StatisticsGen", "Transform", "Evaluator"):
        a = single["components"][name]["seconds"]
        b = multi["components"][name]["seconds"]
        out[name] = {
            "in_memory_seconds": a,
            "multi_processing_seconds": b,
            "in_memory_examples_per_s": round(rows / a, 1),
            "multi_processing_examples_per_s": round(rows / b, 1),
            "multi_over_in_memory_throughput": round(a / b, 3),
            "multi_processing_peak_rss_mb": multi["components"][name]["peak_rss_mb"],
            "in_memory_peak_rss_mb": single["components"][name]["peak_rss_mb"],
        }
    return out


# -- shared by 2, 3, 5: the 1x run's Transform output ---------------------------------------------
def transformed_inputs(metadata_path):
    import tensorflow_transform as tft

    from pipeline.runners.local import latest_run_outputs
    from pipeline.spec import load_spec

    outputs = latest_run_outputs(metadata_path)
    graph = outputs["Transform"]["transform_graph"][0].uri
    examples = outputs["Transform"]["transformed_examples"][0].uri
    raw_examples = outputs["CsvExampleGen"]["examples"][0].uri
    spec = load_spec(scaled_spec(1)[0])
    return (
        spec,
        tft.TFTransformOutput(graph),
        os.path.join(examples, "Split-train", "*"),
        os.path.join(examples, "Split-validation", "*"),
        os.path.join(examples, "Split-eval", "*"),
        os.path.join(raw_examples, "Split-eval", "*"),
    )


def _model(spec, tft_output, train_files):
    from trainer.data import collect_labels
    from trainer.model import FeatureInfo, build_model, compile_model

    labels = collect_labels(train_files, spec, tft_output.transformed_feature_spec())
    info = FeatureInfo.from_transform_output(tft_output, labels, spec)
    return compile_model(build_model(spec, info), spec, info), info


# -- 2. the Trainer's input pipeline vs the same batches in memory ---------------------------------
def bench_input(inputs) -> dict:
    import tensorflow as tf

    from trainer.data import make_dataset, should_cache

    spec, tft_output, train_files, _, _, _ = inputs
    batch = spec.training["batch_size"]
    model, info = _model(spec, tft_output, train_files)
    # The Trainer's own dataset, with its own choice of caching the records.
    cache = should_cache(train_files, spec.training["cache_in_memory"])
    files_ds = make_dataset(train_files, spec, info, batch, shuffle=True, seed=42, cache=cache)
    steps = sum(1 for _ in files_ds)
    examples = sum(int(tf.shape(x[spec.inputs[0].name])[0]) for x, _, _ in files_ds)
    log(f"input: {examples} train examples, {steps} steps of {batch}")
    model.fit(files_ds, epochs=1, verbose=0)  # builds and traces the train step

    class EpochTimes(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.t)

    memory_ds = files_ds.cache()
    for _ in memory_ds:  # fill the cache: parsed, weighted batches in memory
        pass
    # Alternate the two, several epochs each, and take medians: the machine is noisy.
    times = {"files": [], "memory": []}
    for _ in range(4):
        for name, ds in (("files", files_ds), ("memory", memory_ds)):
            timer = EpochTimes()
            timer.times = times[name]
            model.fit(ds, epochs=2, verbose=0, callbacks=[timer])
    t_files, t_memory = float(np.median(times["files"])), float(np.median(times["memory"]))
    t = time.perf_counter()
    for _ in range(3):
        for _ in files_ds:
            pass
    t_input_only = (time.perf_counter() - t) / 3
    return {
        "records_cached_in_memory": cache,
        "epoch_seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "train_examples": examples,
        "steps_per_epoch": steps,
        "batch_size": batch,
        "files_examples_per_s": round(examples / t_files, 1),
        "memory_examples_per_s": round(examples / t_memory, 1),
        "files_over_memory": round(t_memory / t_files, 3),
        "input_only_examples_per_s": round(examples / t_input_only, 1),
        "wait_for_input_ms_per_step": round(max(0.0, t_files - t_memory) / steps * 1000, 2),
        "step_ms_in_memory": round(t_memory / steps * 1000, 2),
        "goal": ">= 0.9",
        "met": t_memory / t_files >= 0.9,
    }


# -- 3. serving: the exported signature vs the bare model on transformed tensors -------------------
def bench_serving(inputs) -> dict:
    import tempfile

    import tensorflow as tf

    from trainer.data import input_feature_names
    from trainer.export import export, input_raw_spec

    spec, tft_output, train_files, _, _, raw_eval = inputs
    model, info = _model(spec, tft_output, train_files)
    export_dir = tempfile.mkdtemp(dir=WORK)
    export(model, tft_output, spec, info, export_dir)
    serving = tf.saved_model.load(export_dir).signatures["serving_default"]
    files = glob.glob(raw_eval)
    raw = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP").take(512)]
    parsed = tf.io.parse_example(tf.constant(raw), input_raw_spec(tft_output, spec))
    transformed = tft_output.transform_features_layer()(parsed)
    features = input_feature_names(spec)
    bare = tf.function(lambda x: model(x, training=False))

    def one(i):
        return {k: transformed[k][i : i + 1] for k in features}

    def latencies(fn, args, n=300):
        for a in args[:20]:
            fn(a)
        out = []
        for i in range(n):
            a = args[i % len(args)]
            t = time.perf_counter()
            result = fn(a)
            tf.nest.map_structure(lambda x: x.numpy(), result)
            out.append((time.perf_counter() - t) * 1000)
        return np.percentile(out, 50), np.percentile(out, 99)

    serving_args = [tf.constant(raw[i : i + 1]) for i in range(64)]
    bare_args = [one(i) for i in range(64)]
    s50, s99 = latencies(lambda a: serving(examples=a), serving_args)
    b50, b99 = latencies(bare, bare_args)

    def throughput(fn, arg, n=30):
        fn(arg)
        t = time.perf_counter()
        for _ in range(n):
            tf.nest.map_structure(lambda x: x.numpy(), fn(arg))
        return 256 * n / (time.perf_counter() - t)

    s_tp = throughput(lambda a: serving(examples=a), tf.constant(raw[:256]))
    b_tp = throughput(bare, {k: transformed[k] for k in features})
    # serving_default's p50 latency per batch size: what TF Serving's batching file is derived
    # from (components/batching.py).
    from components.batching import BATCHING, derive

    curve = {}
    for size in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512):
        batches = [tf.constant(raw[i : i + size]) for i in range(0, 512 - size + 1, size)][:8]
        curve[size] = round(float(latencies(lambda a: serving(examples=a), batches, n=60)[0]), 3)
    derived = derive(curve)
    return {
        "batching_curve_p50_ms": curve,
        "batching_derived": derived,
        "batching_committed": BATCHING,
        "serving_p50_ms": round(s50, 3),
        "serving_p99_ms": round(s99, 3),
        "bare_p50_ms": round(b50, 3),
        "bare_p99_ms": round(b99, 3),
        "p50_serving_over_bare": round(s50 / b50, 3),
        "serving_examples_per_s_batch256": round(s_tp, 1),
        "bare_examples_per_s_batch256": round(b_tp, 1),
        "goal": "p50 <= 2x bare",
        "met": s50 <= 2 * b50,
    }


# -- 5. models that win (issue 19): multi-output vs single-head vs boosted trees, bench/quality.py
QUALITY_SPECS = {"movies": MOVIES_SPEC, "digits": DIGITS_SPEC}


# Part 5's runs in results.json, oldest first: issue 19's "before" (one epoch for all heads), per-head
# selection (no weight averaging), weight averaging (heads reading the trunk directly), and the
# current defaults.
QUALITY_RUNS = (
    ("quality_before", "before"),
    ("quality_per_head", "per-head selection, no averaging"),
    ("quality_averaged", "weight averaging, heads without a hidden layer"),
    ("quality", "after"),
)


def bench_quality(scaling) -> dict:
    from pipeline.runners.local import latest_run_outputs
    from pipeline.spec import load_spec
    from trainer.compare import compare, transformed_splits

    out = {}
    for name, path in QUALITY_SPECS.items():
        spec_path = default_settings_spec(path, os.path.join(WORK, "quality"))
        if name == "movies":  # the x1 run's Transform output: `model:`/`training:` don't reach it
            metadata = scaling["1"]["metadata"]
        else:
            log(f"quality: the {name} pipeline")
            run = run_pipeline("mimo", spec_path, os.path.join(WORK, f"run_{name}"), IN_MEMORY)
            metadata = run["metadata"]
        splits = transformed_splits(latest_run_outputs(metadata), load_spec(spec_path))

        def say(message, name=name):
            log(f"quality {name}: {message}")

        out[name] = compare(splits, SEEDS, log=say)
        out[name]["mechanisms"] = mechanisms(splits, SEEDS, log=say)
    return out


# -- 7. partial labels: each head on its own labelled rows vs the complete rows only --------------
# Each head's training label is hidden on its own random rows at the rates of a real incident data
# set (9%, 17%, 36%); the eval split keeps every label, so both models are scored on the same rows.
PARTIAL_RATES = (0.09, 0.17, 0.36)
PARTIAL_SEEDS = (1, 2, 3, 4, 5)


def bench_partial(inputs) -> dict:
    from trainer.compare import fit_and_score
    from trainer.data import read_transformed, write_transformed

    spec, tft_output, train_files, validation_files, eval_files, _ = inputs
    feature_spec = tft_output.transformed_feature_spec()
    data = read_transformed(train_files, feature_spec)
    n = len(data[spec.outputs[0].label_present])
    rates = dict(zip((h.name for h in spec.outputs), PARTIAL_RATES, strict=False))
    runs = {"mask": [], "complete": []}
    rows = {"mask": [], "complete": []}
    seconds = {"mask": [], "complete": []}
    for seed in PARTIAL_SEEDS:
        rng = np.random.default_rng(seed)
        keep = {
            h.name: (rng.random(n) >= rates.get(h.name, 0.0))
            & (data[h.label_present].reshape(-1) > 0.5)
            for h in spec.outputs
        }
        masked = dict(data)
        for h in spec.outputs:
            masked[h.label_present] = (
                keep[h.name].astype(np.float32).reshape(data[h.label_present].shape)
            )
        complete = np.flatnonzero(np.all(list(keep.values()), axis=0))
        files = {
            "mask": write_transformed(masked, feature_spec, f"{WORK}/partial-mask.gz", range(n)),
            "complete": write_transformed(data, feature_spec, f"{WORK}/partial-all.gz", complete),
        }
        for variant, path in files.items():
            log(f"partial labels: seed {seed}, {variant}")
            report, t, _ = fit_and_score(spec, tft_output, path, validation_files, eval_files, seed)
            seconds[variant].append(t)
            runs[variant].append(
                {
                    h.name: report["heads"][h.name]["metrics"][primary_metric(h)[0]]
                    for h in spec.outputs
                }
            )
            rows[variant].append(
                {h.name: report["heads"][h.name]["train_examples"] for h in spec.outputs}
            )
        eval_rows = {h.name: report["heads"][h.name]["examples"] for h in spec.outputs}
    heads = {}
    for h in spec.outputs:
        metric, direction = primary_metric(h)
        sign = 1 if direction == "higher" else -1
        m = np.array([r[h.name] for r in runs["mask"]])
        c = np.array([r[h.name] for r in runs["complete"]])
        gain = sign * (m - c)  # > 0: the masked model is better
        heads[h.name] = {
            "metric": metric,
            "better": direction,
            "mask_mean": round(float(m.mean()), 4),
            "mask_sd": round(float(m.std(ddof=1)), 4),
            "complete_mean": round(float(c.mean()), 4),
            "complete_sd": round(float(c.std(ddof=1)), 4),
            "gain_mean": round(float(gain.mean()), 4),
            "gain_sd": round(float(gain.std(ddof=1)), 4),
            "hidden_rate": rates.get(h.name, 0.0),
            "train_rows_mask": int(np.mean([r[h.name] for r in rows["mask"]])),
            "train_rows_complete": int(np.mean([r[h.name] for r in rows["complete"]])),
            "eval_rows": eval_rows[h.name],
        }
    return {
        "seeds": list(PARTIAL_SEEDS),
        "train_rows": n,
        "seconds_mask": round(float(np.mean(seconds["mask"])), 1),
        "seconds_complete": round(float(np.mean(seconds["complete"])), 1),
        "heads": heads,
        "met": all(v["gain_mean"] > 0 for v in heads.values()),
        "goal": "every head better when it learns from all its labelled rows",
    }


# -- 9. TFX's Tuner: the default search space on full movies, then each head on eval --------------
TUNING_TRIALS = 8


def bench_tuning(inputs) -> dict:
    """The Tuner's search (trainer/tuning.py: the spec's model trained per trial, scored on the
    validation split) with the default space and algorithm, then the spec as written and the
    best trial's values each fitted with the quality seeds and scored on eval, which chose
    nothing."""
    import dataclasses
    import shutil

    from bench.quality import SEEDS
    from trainer.compare import fit_and_score, mean_sd
    from trainer.tuning import make_tuner, tuned

    spec, tft_output, train_files, validation_files, eval_files, _ = inputs
    spec = dataclasses.replace(spec, tuning={**spec.tuning, "trials": TUNING_TRIALS})
    folder = os.path.join(WORK, "tuning")
    shutil.rmtree(folder, ignore_errors=True)
    tuner = make_tuner(spec, tft_output, folder)
    started = time.perf_counter()
    tuner.search(
        train_files=train_files,
        validation_files=validation_files,
        train_steps=None,
        eval_steps=None,
    )
    search_seconds = time.perf_counter() - started
    best = dict(tuner.get_best_hyperparameters()[0].values)
    trials = [
        {"values": dict(t.hyperparameters.values), "score": round(float(t.score), 5)}
        for t in tuner.oracle.get_best_trials(TUNING_TRIALS)
    ]
    variants = {"spec": spec, "tuned": tuned(spec, best)}
    heads = {h.name: {} for h in spec.outputs}
    seconds = {}
    for name, variant in variants.items():
        scores = {h.name: [] for h in spec.outputs}
        times = []
        for seed in SEEDS:
            log(f"tuning: {name}, seed {seed}")
            report, t, _ = fit_and_score(
                variant, tft_output, train_files, validation_files, eval_files, seed
            )
            times.append(t)
            for h in spec.outputs:
                scores[h.name].append(report["heads"][h.name]["metrics"][primary_metric(h)[0]])
        seconds[name] = round(float(np.mean(times)), 1)
        for h in spec.outputs:
            heads[h.name][name] = mean_sd(scores[h.name])
    for h in spec.outputs:
        metric, better = primary_metric(h)
        heads[h.name].update(metric=metric, better=better)
    return {
        "trials": TUNING_TRIALS,
        "algorithm": spec.tuning["algorithm"],
        "space": spec.tuning["space"],
        "search_seconds": round(search_seconds, 1),
        "best": best,
        "trial_scores": trials,
        "seeds": list(SEEDS),
        "fit_seconds": seconds,
        "heads": heads,
    }


# -- 6. the anchor: TFX's penguin example vs ours on its 334 rows; 8. movies before / after --------
def penguin_data() -> tuple[str, str, int]:
    """TFX's penguin rows as a CSV (from the tfx wheel's testdata) under labelled/, a copy of
    bench/penguin.yaml above it; (the folder for the penguin example, our spec, rows)."""
    import shutil

    import tensorflow as tf
    import tfx

    folder = os.path.join(WORK, "penguin", "labelled")
    shutil.rmtree(folder, ignore_errors=True)  # the penguin example reads every file in it
    os.makedirs(folder)
    path = os.path.join(folder, "penguins.csv")
    testdata = os.path.join(os.path.dirname(tfx.__file__), "components", "testdata", "penguin")
    files = glob.glob(os.path.join(testdata, "data", "Split-*", "*.gz"))
    rows = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        ex = tf.train.Example.FromString(record.numpy())
        row = {}
        for k, f in ex.features.feature.items():
            kind = f.WhichOneof("kind")
            values = list(getattr(f, kind).value)
            row[k] = values[0] if values else ""
        rows.append(row)
    columns = sorted(rows[0])
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    spec = os.path.join(os.path.dirname(folder), "penguin.yaml")  # not among the CSVs
    with open(os.path.join(REPO, "bench", "penguin.yaml")) as src, open(spec, "w") as dst:
        dst.write(src.read())
    return os.path.dirname(folder), spec, len(rows)


def bench_penguin() -> dict:
    """End to end on the same 334 rows: TFX's penguin example (Keras, no Tuner), ours, and our
    code before issue 15; each in its own process, back to back."""
    data_root, spec, rows = penguin_data()
    out = {"rows": rows, "before_ref": BEFORE_REF}
    log(f"penguin: TFX's penguin pipeline on {rows} rows")
    out["penguin"] = run_pipeline(
        "penguin", data_root, os.path.join(WORK, "run_penguin"), IN_MEMORY_SPELLED_OUT
    )
    # Like for like, TFX's example trains one model: ours without the boosted rival; then with it
    # (the product's default), to show what the rival costs at this size.
    log("penguin: ours on the same rows (no rival)")
    out["ours"] = run_pipeline(
        "mimo", without_rival(spec), os.path.join(WORK, "run_penguin_ours"), IN_MEMORY
    )
    log("penguin: ours with the boosted rival (the default)")
    out["ours_with_rival"] = run_pipeline(
        "mimo", spec, os.path.join(WORK, "run_penguin_rival"), IN_MEMORY
    )
    log(f"penguin: ours at {BEFORE_REF} on the same rows")
    out["before"] = run_pipeline(
        "mimo",
        spec_before(spec),
        os.path.join(WORK, "run_penguin_before"),
        IN_MEMORY_SPELLED_OUT,
        tree=before_tree(),
    )
    for side in ("ours", "ours_with_rival", "before"):
        out[f"{side}_over_penguin"] = round(
            out[side]["total_seconds"] / out["penguin"]["total_seconds"], 3
        )
    return out


def bench_before_after() -> dict:
    """Full movies with today's code, then with the code before issue 15 (with the Beam arguments
    it passed); back to back, fresh caches."""
    spec_path, rows = scaled_spec(1)
    log("before/after: movies x1 with today's code (the default: with the boosted rival)")
    after = run_pipeline("mimo", spec_path, os.path.join(WORK, "run_x1_after"), IN_MEMORY)
    log("before/after: movies x1 with today's code, without the rival")
    after_no_rival = run_pipeline(
        "mimo", without_rival(spec_path), os.path.join(WORK, "run_x1_no_rival"), IN_MEMORY
    )
    log(f"before/after: movies x1 with the code at {BEFORE_REF}")
    before = run_pipeline(
        "mimo",
        spec_before(spec_path),
        os.path.join(WORK, "run_x1_before"),
        IN_MEMORY_SPELLED_OUT,
        tree=before_tree(),
    )
    return {
        "rows": rows,
        "before_ref": BEFORE_REF,
        "before": before,
        "after": after,
        "after_no_rival": after_no_rival,
    }


def fixed_and_per_row(scaling) -> dict:
    """Per component, a least-squares line seconds = fixed + per_1k * rows/1000 over the scales."""
    keys = sorted(scaling, key=float)
    if len(keys) < 2:
        return {}
    rows = np.array([scaling[k]["rows"] for k in keys], dtype=float) / 1000
    out = {}
    names = sorted({c for k in keys for c in scaling[k]["components"]})
    for name in [*names, "total"]:
        if name != "total" and any(name not in scaling[k]["components"] for k in keys):
            continue
        secs = np.array(
            [
                scaling[k]["total_seconds"]
                if name == "total"
                else scaling[k]["components"][name]["seconds"]
                for k in keys
            ]
        )
        per_1k, fixed = np.polyfit(rows, secs, 1)
        out[name] = {
            "fixed_seconds": round(float(fixed), 1),
            "seconds_per_1k_rows": round(float(per_1k), 2),
        }
    return out


# -- report -------------------------------------------------------------------------------------
def plot(results):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scaling = results.get("scaling")
    if scaling and len(scaling) > 1:
        rows = [scaling[k]["rows"] for k in sorted(scaling, key=float)]
        first = scaling[min(scaling, key=float)]
        last = scaling[max(scaling, key=float)]["components"]
        # Sub-second steps are below the RSS sampler's resolution: left out.
        names = sorted(c for c, v in last.items() if v["seconds"] >= 1)
        fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
        for name in names:
            secs = [
                scaling[k]["components"].get(name, {}).get("seconds")
                for k in sorted(scaling, key=float)
            ]
            rss = [
                scaling[k]["components"].get(name, {}).get("peak_rss_mb")
                for k in sorted(scaling, key=float)
            ]
            a.plot(rows, secs, marker="o", label=name)
            b.plot(rows, rss, marker="o", label=name)
        a.plot(
            rows,
            [first["components"]["Transform"]["seconds"] * r / rows[0] for r in rows],
            "k:",
            label="linear (Transform)",
        )
        for ax, title in ((a, "wall time (s)"), (b, "peak RSS (MB)")):
            ax.set_xscale("log")
            ax.set_xlabel("rows")
            ax.set_title(title)
        a.set_yscale("log")
        a.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(os.path.join(RESULTS, "scaling.png"), dpi=110)
        plt.close(fig)


def summary(results) -> str:
    lines = ["# Benchmark summary", ""]
    env = results["environment"]
    lines += [
        f"Measured {env['date']} on {env['machine']} ({env['cpus']} CPUs, no GPU). The two sides of each ratio were measured in one bench session on this machine (date of the last one; `--merge` keeps earlier parts): parts 2, 3 and 5 back to back in one process, parts 1, 4 and 6 in separate pipeline runs (see results.json).",
        "",
    ]
    if results.get("before", {}).get("note"):
        lines += [
            f"Rows marked before compare with an earlier session on this machine: {results['before']['note']}. "
            "The Evaluator's two metric implementations are also compared back to back on one model.",
            "",
        ]
    lines += ["| # | measure | figure | goal | met |", "|---|---|---|---|---|"]
    sc = results.get("scaling", {})
    keys = sorted(sc, key=float)
    for lo_key, hi_key in zip(
        keys, keys[1:], strict=False
    ):  # each step up in rows: x0.1 -> x1 -> x10
        lo, hi = sc[lo_key], sc[hi_key]
        growth = hi["rows"] / lo["rows"]
        for name in sorted(lo["components"]):
            # Sub-second steps (SchemaGen, the resolver, ...) are below the sampler's resolution.
            if name not in hi["components"] or hi["components"][name]["seconds"] < 1:
                continue
            t = hi["components"][name]["seconds"] / max(lo["components"][name]["seconds"], 0.01)
            m = hi["components"][name]["peak_rss_mb"] / max(
                lo["components"][name]["peak_rss_mb"], 1
            )
            lines.append(
                f"| 1 | {name}: time x{hi_key} rows / x{lo_key}; peak RSS ratio | {t:.2f}x time for {growth:.0f}x rows; RSS {m:.2f}x | time <= {growth:.0f}x, RSS flat (<= 1.2x) | {'yes' if t <= growth * 1.05 and m <= 1.2 else 'no'} |"
            )
    old = results.get("before", {}).get("scaling", {}).get("1")
    if old and "1" in sc:
        for name in ("Evaluator", "total"):
            a = old["total_seconds"] if name == "total" else old["components"][name]["seconds"]
            b = (
                sc["1"]["total_seconds"]
                if name == "total"
                else sc["1"]["components"][name]["seconds"]
            )
            what = "whole pipeline" if name == "total" else "Evaluator"
            lines.append(
                f"| 1 | {what} at x1, after / before the per-label multilabel metrics | {b / a:.2f}x ({b} vs {a} s) | faster | {'yes' if b < a else 'no'} |"
            )
    if "evaluator" in results:
        r = results["evaluator"]
        lines.append(
            f"| 1 | Evaluator on the x1 eval split, multilabel metrics per label at once / TFMA's binarized per class | {r['per_label_over_tfma_time']:.2f}x ({r['per_label_seconds']} vs {r['tfma_binarized_seconds']} s; same keys: {r['same_keys']}; largest difference of {r['values']} values: "
            + ", ".join(f"{k} {v:.4f}" for k, v in sorted(r["max_abs_difference"].items()))
            + ") | faster, same values | "
            + ("yes" if r["per_label_over_tfma_time"] < 1 and r["same_keys"] else "no")
            + " |"
        )
    before = results.get("input_before")
    if before:
        lines.append(
            "| 2 | before: the Trainer read its records from the GZIP files every epoch | "
            f"{before['files_over_memory']:.3f}x (waiting "
            f"{before['wait_for_input_ms_per_step']} ms/step) | >= 0.9x | "
            f"{'yes' if before['met'] else 'no'} |"
        )
    if "input" in results:
        r = results["input"]
        lines.append(
            f"| 2 | Trainer input pipeline (records cached: {r.get('records_cached_in_memory')}) vs same batches in memory | {r['files_over_memory']:.3f}x ({r['files_examples_per_s']:.0f} vs {r['memory_examples_per_s']:.0f} ex/s; waiting {r['wait_for_input_ms_per_step']} ms/step) | >= 0.9x | {'yes' if r['met'] else 'no'} |"
        )
    if "serving" in results:
        r = results["serving"]
        lines.append(
            f"| 3 | serving_default p50 (1 raw example) vs bare model | {r['p50_serving_over_bare']:.2f}x ({r['serving_p50_ms']} vs {r['bare_p50_ms']} ms; p99 {r['serving_p99_ms']} vs {r['bare_p99_ms']} ms; batch 256: {r['serving_examples_per_s_batch256']:.0f} vs {r['bare_examples_per_s_batch256']:.0f} ex/s) | <= 2x | {'yes' if r['met'] else 'no'} |"
        )
    if "beam" in results:
        r = results["beam"]
        for name in ("CsvExampleGen", "StatisticsGen", "Transform", "Evaluator"):
            x = r[name]
            lines.append(
                f"| 4 | {name} multi_processing(2) / in_memory throughput | {x['multi_over_in_memory_throughput']:.2f}x ({x['multi_processing_examples_per_s']:.0f} vs {x['in_memory_examples_per_s']:.0f} ex/s) | (informs the default) | - |"
            )
        if r.get("note"):
            lines.append(f"| 4 | (note) | {r['note']} | | |")
    for key, label in (
        ("partial_before", "before: one early stopping for every head; "),
        ("partial_per_head", "before: per-head selection, no weight averaging; "),
        ("partial", ""),
    ):
        if key not in results:
            continue
        r = results[key]
        for head, v in r["heads"].items():
            lines.append(
                f"| 7 | {label}partial labels ({v['hidden_rate']:.0%} of {head}'s train labels hidden, other heads other rows): {head} {v['metric']}, each head on its labelled rows / complete rows only ({v['train_rows_mask']} / {v['train_rows_complete']} rows; same {v['eval_rows']} eval rows; seeds {r['seeds']}) | {v['mask_mean']} ± {v['mask_sd']} vs {v['complete_mean']} ± {v['complete_sd']} (gain {v['gain_mean']:+.4f} ± {v['gain_sd']}) | better | {'yes' if v['gain_mean'] > 0 else 'no'} |"
            )
    r = results.get("tuning")
    if r:
        for head, v in r["heads"].items():
            spec_side, tuned_side = v["spec"], v["tuned"]
            sign = 1 if v["better"] == "higher" else -1
            gain = sign * (tuned_side["mean"] - spec_side["mean"])
            lines.append(
                f"| 9 | TFX's Tuner ({r['trials']} trials, {r['algorithm']}, the default space; search {r['search_seconds']} s; best {r['best']}): {head} {v['metric']} on eval, the spec's values / the best trial's (seeds {r['seeds']}) | {spec_side['mean']} ± {spec_side['sd']} vs {tuned_side['mean']} ± {tuned_side['sd']} (gain {gain:+.4f}) | better | {'yes' if gain > 0 else 'no'} |"
            )
    r = results.get("penguin", {})
    if "ours" in r:
        p = r["penguin"]["total_seconds"]
        sides = (
            ("before", f"before ({r['before_ref']})"),
            ("ours", "now, no rival (like for like)"),
            ("ours_with_rival", "now, with the boosted rival (the default)"),
        )
        for side, label in sides:
            if side not in r:
                continue
            t = r[side]["total_seconds"]
            lines.append(
                f"| 6 | end to end on TFX's penguin data ({r['rows']} rows), ours {label} / TFX's penguin example | {r[f'{side}_over_penguin']:.2f}x ({t} vs {p} s) | <= 0.5x | {'yes' if t <= 0.5 * p else 'no'} |"
            )
    r = results.get("before_after")
    if r:
        b = r["before"]["total_seconds"]
        for side, label in (("after", "now"), ("after_no_rival", "now without the rival")):
            if side not in r:
                continue
            a = r[side]["total_seconds"]
            lines.append(
                f"| 8 | full movies ({r['rows']} rows) end to end, {label} / before ({r['before_ref']}), fresh caches | {a / b:.2f}x ({a} vs {b} s) | <= 0.6x and <= 120 s | {'yes' if a <= 0.6 * b and a <= 120 else 'no'} |"
            )
        for name in sorted(set(r["before"]["components"]) | set(r["after"]["components"])):
            x, y = r["after"]["components"].get(name), r["before"]["components"].get(name)
            if x and not y:
                lines.append(
                    f"| 8 | - {name}, now (not in the code before) | {x['seconds']} s | | |"
                )
            elif x and y["seconds"] >= 1:
                lines.append(
                    f"| 8 | - {name}, now / before | {x['seconds'] / y['seconds']:.2f}x ({x['seconds']} vs {y['seconds']} s) | | |"
                )
    lines.append("")
    if len(keys) > 1:
        lines += [
            f"Scaling spans {sc[keys[0]]['rows']} to {sc[keys[-1]]['rows']} rows; below about "
            "20k rows fixed costs (graph building, Beam setup, TFMA) dominate every step, so "
            "the step to the largest scale is the one that shows how each component grows.",
            "",
        ]
    if sc:
        lines += ["## Per component (seconds / peak RSS MB)", ""]
        names = sorted({c for r in sc.values() for c in r["components"]})
        lines.append(
            "| component | " + " | ".join(f"x{k} ({sc[k]['rows']} rows)" for k in keys) + " |"
        )
        lines.append("|---|" + "---|" * len(keys))
        for name in names:
            cells = []
            for k in keys:
                c = sc[k]["components"].get(name)
                cells.append(f"{c['seconds']} s / {c['peak_rss_mb']:.0f} MB" if c else "-")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append(
            "| total | "
            + " | ".join(
                f"{sc[k]['total_seconds']} s / {sc[k]['peak_rss_mb']:.0f} MB" for k in keys
            )
            + " |"
        )
        lines.append("")
    fit = fixed_and_per_row(sc)
    if fit:
        lines += [
            "## Fixed and per-row cost",
            "",
            f"A line through each component's seconds at x{', x'.join(keys)}: the fixed part "
            "(its value at 0 rows) and the part that grows with the rows.",
            "",
            "| component | fixed s | s per 1k rows |",
            "|---|---|---|",
        ]
        for name, v in fit.items():
            lines.append(f"| {name} | {v['fixed_seconds']} | {v['seconds_per_1k_rows']} |")
        lines.append("")
    curve = results.get("serving", {}).get("batching_curve_p50_ms")
    if curve:
        r = results["serving"]
        lines += [
            "## TF Serving batching (part 3)",
            "",
            "serving_default's p50 latency per batch of raw examples (movies model), the curve "
            "`components/batching.py` derives each pushed version's `batching_parameters.txt` "
            "from:",
            "",
            "| batch | p50 ms | examples/s |",
            "|---|---|---|",
        ]
        for size, ms in curve.items():
            lines.append(f"| {size} | {ms} | {int(size) / ms * 1000:.0f} |")
        lines += [
            "",
            f"Derived from this curve: {r['batching_derived']}; committed (what pushes write): "
            f"{r['batching_committed']}"
            + ("" if r["batching_derived"] == r["batching_committed"] else " (they differ)"),
            "",
        ]
    for key, label in QUALITY_RUNS:
        if key in results:
            runs = {f"{d} ({label})": r for d, r in results[key].items()}
            lines += summary_lines(runs)
            lines += mechanisms_lines(runs)
            peaks = {d: r["per_head_epochs"] for d, r in runs.items() if "per_head_epochs" in r}
            if peaks:
                lines += per_head_epochs_lines(peaks)
            lines.append("")
    lines.append("Raw figures: results.json. Plot: scaling.png.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default=os.environ.get("BENCH_SCALES", "0.02,0.1,1"))
    parser.add_argument("--skip", default="", help="comma-separated parts to skip")
    parser.add_argument(
        "--merge", action="store_true", help="keep results.json's parts; measure only the others"
    )
    parser.add_argument(
        "--report", action="store_true", help="only rewrite summary.md and plots from results.json"
    )
    args = parser.parse_args(argv)
    if args.report:
        with open(os.path.join(RESULTS, "results.json")) as f:
            results = json.load(f)
        with open(os.path.join(RESULTS, "summary.md"), "w") as f:
            f.write(summary(results))
        plot(results)
        print(summary(results))
        return 0
    skip = set(filter(None, args.skip.split(",")))
    os.makedirs(WORK, exist_ok=True)
    path = os.path.join(RESULTS, "results.json")
    previous = {}
    if args.merge and os.path.exists(path):
        with open(path) as f:
            previous = json.load(f)
        skip |= {k for k in previous if k not in ("scaling", "environment")}
    results = {
        "environment": {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "machine": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        }
    }
    results.update({k: v for k, v in previous.items() if k != "environment"})

    def save():
        with open(path, "w") as f:
            json.dump(results, f, indent=2, default=str)
        with open(os.path.join(RESULTS, "summary.md"), "w") as f:
            f.write(summary(results))

    scales = [float(s) for s in args.scales.split(",")] if "scaling" not in skip else [1]
    # The 1x run first: the in-process parts use its Transform output; other scales last.
    results.setdefault("scaling", {})
    one = results["scaling"].get("1")
    if one and not os.path.exists(one["metadata"]):
        # Its artifacts are gone (a clean clone): every scale is measured again, in this session.
        log("the x1 run's artifacts are gone: measuring every scale again")
        results["scaling"] = {}
    if "1" not in results["scaling"]:
        results["scaling"].update(bench_scaling([1]))
        save()
    inputs = transformed_inputs(results["scaling"]["1"]["metadata"])
    parts = (
        ("input", bench_input),
        ("serving", bench_serving),
        ("partial", bench_partial),
        ("tuning", bench_tuning),
    )
    for name, fn in parts:
        if name not in skip:
            log(name)
            results[name] = fn(inputs)
            save()
    if "quality" not in skip:
        log("quality")
        results["quality"] = bench_quality(results["scaling"])
        save()
    if "evaluator" not in skip:
        log("evaluator")
        results["evaluator"] = bench_evaluator(results["scaling"]["1"]["metadata"])
        save()
    if "penguin" not in skip:
        results["penguin"] = bench_penguin()
        save()
    if "before_after" not in skip:
        results["before_after"] = bench_before_after()
        save()
    if "beam" not in skip:
        results["beam"] = bench_beam(results["scaling"])
        save()
    for factor in scales:
        if f"{factor:g}" not in results["scaling"]:
            results["scaling"].update(bench_scaling([factor]))
            save()
    plot(results)
    print(summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

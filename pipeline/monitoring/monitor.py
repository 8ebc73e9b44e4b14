"""`mimo monitor`: served requests against the published version that answered them.

    mimo monitor --model movies --requests requests.csv [--version 3] [--json out.json]

Requests come as TF Serving logs them (a TFRecord of `PredictionLog`s: predict requests of
serialized tf.Examples, classify or regress requests' examples), as a TFRecord of tf.Examples,
or as raw rows: a CSV with the training data's columns (its missing-value tokens and encoding, as
the spec says) or JSON lines of {column: value}. Each becomes a tf.Example typed by the version's
own training schema, so a word in a number column, or a request without one of the model's
columns, is a one-line error naming it (`RequestError`) before anything is measured.

Then, per input, the skew of the requests against the version's training statistics (TFDV's
`skew_comparator`, the spec's `monitoring` thresholds: pipeline/monitoring/drift.py), and per
head, the drift of the version's predictions on the requests against its predictions on its own
eval split (what each head type compares: `HeadType.monitored_values`), and for the heads whose label some
requests carry (delayed ground truth), the head's primary metric on them. A table on the
terminal, the same as JSON for machines, and the exit code 1 when anything is over its threshold
(an Airflow or Kubeflow task gates on it).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

from components.csv_example_gen import CsvOptions, iter_rows, read_header
from pipeline.monitoring import drift

BATCH = 256  # examples per call of the model


class RequestError(ValueError):
    """The requests cannot be read as the model's examples (one line: file, row, column)."""


@dataclass
class Report:
    model: str
    version: int
    requests: str
    rows: int
    eval_rows: int
    skew: list = field(default_factory=list)  # Findings per input
    prediction_drift: list = field(default_factory=list)  # Findings per head
    unchecked: list = field(default_factory=list)  # columns not compared, and why
    labelled: list = field(default_factory=list)  # heads' metrics on labelled requests
    seconds: float = 0.0

    @property
    def over(self) -> list:
        return [f for f in self.skew + self.prediction_drift if f.over]

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "version": self.version,
            "requests": self.requests,
            "rows": self.rows,
            "eval_rows": self.eval_rows,
            "skew": [f.to_dict() for f in self.skew],
            "prediction_drift": [f.to_dict() for f in self.prediction_drift],
            "unchecked": self.unchecked,
            "labelled": self.labelled,
            "over": len(self.over),
            "seconds": round(self.seconds, 2),
        }

    def text(self) -> str:
        lines = [
            drift.table(
                self.skew,
                f"Skew of {self.rows} requests ({self.requests}) against the training data of "
                f"{self.model} version {self.version}:",
            ),
            drift.table(
                self.prediction_drift,
                f"Prediction drift: version {self.version}'s answers to the requests against "
                f"its answers on its eval split ({self.eval_rows} examples):",
            ),
        ]
        lines += [f"not compared: {u}" for u in self.unchecked]
        if self.labelled:
            lines.append("Heads on the requests that carry their label (eval split: the card's):")
            for row in self.labelled:
                before = "n/a" if row["eval"] is None else f"{row['eval']:.4g}"
                lines.append(
                    f"  {row['head']:<12} {row['metric']} {row['served']:.4g} on "
                    f"{row['labelled']} labelled requests, {before} on eval"
                )
        if self.over:
            lines.append(f"{len(self.over)} over its threshold:")
            lines += [
                "  - " + f.line("skew" if f.kind == "input" else "prediction drift")
                for f in self.over
            ]
        else:
            lines.append("Nothing over its threshold.")
        return "\n".join(lines)


# -- requests -> tf.Examples typed by the training schema ----------------------------------------
def _types(schema) -> dict:
    from tensorflow_metadata.proto.v0 import schema_pb2

    names = {schema_pb2.INT: "INT", schema_pb2.FLOAT: "FLOAT", schema_pb2.BYTES: "BYTES"}
    return {f.name: names.get(f.type, "BYTES") for f in schema.feature}


def _roles(spec) -> dict:
    """{column: what reads it} for the error messages."""
    roles = {c: f"input {i.name!r}" for i in spec.inputs for c in i.columns}
    roles.update({o.column: f"the label of head {o.name!r}" for o in spec.outputs})
    return roles


def _feature(value, kind: str, where: str, column: str, role: str):
    import tensorflow as tf

    if kind in ("INT", "FLOAT"):
        try:
            number = float(value)
        except (TypeError, ValueError):
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            raise RequestError(
                f"{where}: column {column!r} holds {shown}: not a number ({role})"
            ) from None
        if kind == "INT":
            if number != int(number):
                raise RequestError(
                    f"{where}: column {column!r} holds {value!r}: not an integer ({role})"
                )
            return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(number)]))
        return tf.train.Feature(float_list=tf.train.FloatList(value=[number]))
    text = value if isinstance(value, str) else json.dumps(value)
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[text.encode()]))


def _example(row: dict, types: dict, tokens, where: str, roles: dict) -> bytes:
    import tensorflow as tf

    features = {}
    for column, value in row.items():
        kind = types.get(column)
        if (
            kind is None
            or value is None
            or (isinstance(value, str) and value.strip() in tokens(column))
        ):
            continue
        features[column] = _feature(value, kind, where, column, roles.get(column, "a column"))
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def _require(columns, path: str, spec) -> None:
    """Every input column is in the requests (labels are optional: delayed ground truth)."""
    needed = [c for i in spec.inputs for c in i.columns]
    absent = [c for c in needed if c not in columns]
    if absent:
        roles = _roles(spec)
        raise RequestError(
            f"{path}: no column {absent[0]!r} ({roles[absent[0]]})"
            + (f" (also missing: {absent[1:]})" if absent[1:] else "")
            + f"; the model's columns are {needed}"
        )


def read_requests(path: str, spec, schema) -> list[bytes]:
    """The requests as serialized tf.Examples of the training schema's types."""
    import tensorflow as tf

    if not tf.io.gfile.exists(path):
        raise RequestError(f"{path}: no such file")
    types, roles = _types(schema), _roles(spec)
    options = CsvOptions(spec.data.na_values, spec.data.column_na_values)
    if path.endswith(".csv"):
        header = read_header(path, spec.data.encoding)
        _require(header, path, spec)
        return [
            _example(
                dict(zip(header, cells, strict=True)),
                types,
                options.missing_tokens,
                f"{path} line {line}",
                roles,
            )
            for line, cells in iter_rows(path, len(header), spec.data.encoding)
        ]
    if path.endswith((".jsonl", ".json")):
        records, seen = [], set()
        with tf.io.gfile.GFile(path) as f:
            for line, text in enumerate(f, start=1):
                if not text.strip():
                    continue
                try:
                    row = json.loads(text)
                except ValueError as e:
                    raise RequestError(f"{path} line {line}: not JSON ({e})") from None
                if not isinstance(row, dict):
                    raise RequestError(f"{path} line {line}: not an object of columns")
                seen |= set(row)
                records.append(
                    _example(row, types, options.missing_tokens, f"{path} line {line}", roles)
                )
        _require(seen, path, spec)
        return records
    return _logged_examples(path, spec, types, roles)


def _logged_examples(path: str, spec, types: dict, roles: dict) -> list[bytes]:
    """A TFRecord of TF Serving's PredictionLogs (or of tf.Examples): their examples, each
    feature checked against the training schema's type."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    compression = "GZIP" if path.endswith(".gz") else None
    records, seen = [], set()
    kinds = {"INT": "int64_list", "FLOAT": "float_list", "BYTES": "bytes_list"}
    try:
        raw = list(tf.data.TFRecordDataset(path, compression_type=compression).as_numpy_iterator())
    except tf.errors.OpError as e:
        raise RequestError(f"{path}: not a TFRecord file ({e.message.splitlines()[0]})") from None
    for n, record in enumerate(raw):
        for example in _examples_of(record, prediction_log_pb2):
            parsed = tf.train.Example.FromString(example)
            for column, feature in parsed.features.feature.items():
                seen.add(column)
                kind, found = types.get(column), feature.WhichOneof("kind")
                if kind is not None and found and found != kinds[kind]:
                    if not (kind == "FLOAT" and found == "int64_list"):
                        raise RequestError(
                            f"{path} record {n}: column {column!r} holds a {found}, but "
                            f"{roles.get(column, 'the model')} was trained on a {kinds[kind]}"
                        )
            records.append(example)
    _require(seen, path, spec)
    return records


def _examples_of(record: bytes, prediction_log_pb2) -> list[bytes]:
    """The serialized tf.Examples a PredictionLog's request holds (a tf.Example: itself)."""
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    try:
        log = prediction_log_pb2.PredictionLog.FromString(record)
    except DecodeError:
        log = None
    kind = log.WhichOneof("log_type") if log is not None else None
    if kind == "predict_log":
        inputs = log.predict_log.request.inputs
        tensor = inputs.get("examples") or next(iter(inputs.values()), None)
        return list(tensor.string_val) if tensor is not None else []
    if kind in ("classify_log", "regress_log", "multi_inference_log"):
        request = getattr(log, kind).request
        return [e.SerializeToString() for e in request.input.example_list.examples]
    tf.train.Example.FromString(record)  # else it must be an example itself
    return [record]


# -- the model's answers ------------------------------------------------------------------------
def answers(model, records: list[bytes]) -> dict:
    """{output: numpy array} of the loaded SavedModel's serving_default on every record, in
    batches."""
    import numpy as np
    import tensorflow as tf

    fn = model.signatures["serving_default"]
    parts: dict = {}
    for start in range(0, len(records), BATCH):
        out = fn(examples=tf.constant(records[start : start + BATCH]))
        for key, value in out.items():
            parts.setdefault(key, []).append(value.numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


def _statistics(columns: dict, schema=None):
    """TFDV's statistics of {column: [values per example]} (or of serialized tf.Examples typed by
    `schema`, given as the column "examples")."""
    import pyarrow as pa
    from tensorflow_data_validation.statistics.stats_impl import generate_statistics_in_memory

    if schema is not None:
        from tfx_bsl.coders.example_coder import ExamplesToRecordBatchDecoder

        batch = ExamplesToRecordBatchDecoder(schema.SerializeToString()).DecodeBatch(
            columns["examples"]
        )
    else:
        arrays = []
        for values in columns.values():
            strings = any(isinstance(v, bytes | str) for row in values for v in row)
            kind = pa.list_(pa.binary()) if strings else pa.list_(pa.float32())
            rows = [[v.encode() if isinstance(v, str) else v for v in row] for row in values]
            arrays.append(pa.array(rows, type=kind))
        batch = pa.RecordBatch.from_arrays(arrays, list(columns))
    return generate_statistics_in_memory(batch)


def eval_records(examples_uri: str) -> list[bytes]:
    """The eval split of the Examples a version was trained from (its card's examples_uri)."""
    import tensorflow as tf

    files = sorted(tf.io.gfile.glob(os.path.join(examples_uri, "Split-eval", "*")))
    if not files:
        return []
    return list(tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator())


def monitor(registry, name: str, version: int, requests: str) -> Report:
    import tensorflow_data_validation as tfdv

    from pipeline.spec import Spec

    start = time.time()
    version_dir = registry.path(name, version)
    card = registry.card(name, version)
    spec = Spec.from_dict(card["spec"])
    published = drift.read_published(version_dir)
    if published is None:
        raise RequestError(
            f"{name} version {version} carries no statistics of its training data (pushed before "
            "monitoring): nothing to compare requests with"
        )
    train_stats, schema = published
    records = read_requests(requests, spec, schema)
    if not records:
        raise RequestError(f"{requests}: no requests in it")
    report = Report(name, version, requests, rows=len(records), eval_rows=0)

    stats = _statistics({"examples": records}, schema)
    thresholds = drift.input_thresholds(spec)
    for column in drift.missing(stats, train_stats, thresholds):
        report.unchecked.append(f"column {column!r}: no value in the requests")
        thresholds.pop(column)
    report.skew = drift.compare(stats, train_stats, schema, thresholds, how="skew")

    import tensorflow as tf

    model = tf.saved_model.load(version_dir)  # once: its answers, and its transform_features
    served = answers(model, records)
    reference = eval_records(card.get("data", {}).get("examples_uri") or "")
    if not reference:
        report.unchecked.append(
            f"prediction drift: the eval split it was trained with is gone "
            f"({card.get('data', {}).get('examples_uri')})"
        )
    else:
        evaluated = answers(model, reference)
        report.eval_rows = len(reference)
        now = {o.name: o.head_type.monitored_values(o, served) for o in spec.outputs}
        before = {o.name: o.head_type.monitored_values(o, evaluated) for o in spec.outputs}
        head_stats, eval_stats = _statistics(now), _statistics(before)
        limits = {}
        for o in spec.outputs:
            own = dict(spec.monitoring["heads"])
            if not any(isinstance(v, bytes | str) for row in before[o.name] for v in row):
                own.pop("infinity_norm", None)  # of categories only
            if own:
                limits[o.name] = (o.name, own)
        report.prediction_drift = drift.compare(
            head_stats, eval_stats, tfdv.infer_schema(eval_stats), limits, kind="head"
        )
    report.labelled = labelled_metrics(model, spec, schema, records, served, card)
    report.seconds = time.time() - start
    return report


def labelled_metrics(model, spec, schema, records, served, card) -> list[dict]:
    """Each head whose label column some requests carry (delayed ground truth): its primary
    metric on those requests (the partial-label rule: a request without the label weighs 0),
    next to its value on the eval split (the card's)."""
    import numpy as np
    import tensorflow as tf

    from preprocessing.heads.base import label_name, label_present_name

    examples = [tf.train.Example.FromString(r) for r in records]
    heads = [o for o in spec.outputs if any(o.column in e.features.feature for e in examples)]
    if not heads:
        return []
    # transform_features parses every label column: one a request lacks gets a placeholder of
    # its training type, and that request weighs 0 for its head (`given`).
    types = _types(schema)
    given = {o.name: np.zeros(len(examples), np.float32) for o in heads}
    filled = []
    for n, record in enumerate(records):
        e = tf.train.Example.FromString(record)
        for o in spec.outputs:
            if o.column in e.features.feature:
                if o.name in given:
                    given[o.name][n] = 1.0
                continue
            kind = types.get(o.column, "BYTES")
            feature = e.features.feature[o.column]
            if kind == "BYTES":
                feature.bytes_list.value.append(b"")
            elif kind == "INT":
                feature.int64_list.value.append(0)
            else:
                feature.float_list.value.append(0.0)
        filled.append(e.SerializeToString())
    fn = model.signatures["transform_features"]
    parts: dict = {}
    for start in range(0, len(filled), BATCH):
        out = fn(examples=tf.constant(filled[start : start + BATCH]))
        for o in heads:
            for key in (label_name(o.name), label_present_name(o.name)):
                parts.setdefault(key, []).append(out[key].numpy())
    rows = []
    evaluation = card.get("evaluation", {}).get("metrics", {})
    for o in heads:
        head_type = o.head_type
        metric_name = head_type.primary
        label = np.concatenate(parts[label_name(o.name)])
        weight = np.concatenate(parts[label_present_name(o.name)]).reshape(-1) * given[o.name]
        declared = head_type.metric_table[metric_name]
        y = head_type.keras_label(tf.constant(label)).numpy()
        if declared.score is not None:  # exact, on the labelled requests
            value = declared.score(y[weight > 0], served[o.name][weight > 0])
        else:
            metric = declared.keras(o, None)
            metric.update_state(y, served[o.name], sample_weight=weight)
            value = float(metric.result().numpy())
        key = head_type.summary_key(metric_name)
        rows.append(
            {
                "head": o.name,
                "metric": metric_name,
                "labelled": int(weight.sum()),
                "served": value,
                "eval": evaluation.get(o.name, {}).get("overall", {}).get(key),
                "higher_is_better": head_type.metric_table[metric_name].higher_is_better,
            }
        )
    return rows


def run(args) -> int:
    """The command: 0 nothing over its threshold, 1 something is, 2 the requests or the model
    cannot be read."""
    import sys

    from components.registry import RegistryError, open_registry

    registry = open_registry(args.registry)
    try:
        report = monitor(
            registry, args.model, registry.version(args.model, args.version), args.requests
        )
    except (RequestError, RegistryError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.text())
    out = args.json or os.path.splitext(args.requests)[0] + ".monitor.json"
    with open(out, "w") as f:
        json.dump(report.to_dict(), f, indent=2)
    print(f"JSON: {os.path.abspath(out)} ({report.seconds:.1f} s)")
    return 1 if report.over else 0

"""DataGate: stops the pipeline before Transform when the data does not fit the schema or the spec.

ExampleValidator only records anomalies; this component reads them, checks the schema against
what the spec expects of every column (present, of a type its modality or head accepts, labels
never missing), and fails the run with a readable summary naming the data file, the column and
the problem. Transform depends on it, so nothing is transformed, trained or pushed after a
failure.
"""

import difflib
import functools
import json
import os

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2
from tfx.dsl.component.experimental.annotations import InputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifact_utils, standard_artifacts
from tfx.utils import io_utils

from components.csv_example_gen import CsvOptions, iter_rows, read_header
from components.errors import DataValidationError
from pipeline import constants
from pipeline.spec import Spec
from preprocessing.base import BYTES, FLOAT, INT

# Values the training data never showed are what OOV buckets are for: reported, not blocking.
NON_BLOCKING = {anomalies_pb2.AnomalyInfo.ENUM_TYPE_UNEXPECTED_STRING_VALUES}

_TYPE_NAMES = {schema_pb2.INT: INT, schema_pb2.FLOAT: FLOAT, schema_pb2.BYTES: BYTES}


__all__ = ["DataGate", "DataValidationError", "check_data", "read_data_artifacts"]


def check_data(
    spec: Spec,
    schema: schema_pb2.Schema,
    stats: "dict[str, statistics_pb2.DatasetFeatureStatistics]",
    anomalies: "dict[str, anomalies_pb2.Anomalies]",
) -> "tuple[list[str], list[str]]":
    """Returns (errors, warnings), each a list of one-line messages."""
    errors, warnings = [], []
    types = {f.name: _TYPE_NAMES.get(f.type, "UNKNOWN") for f in schema.feature}
    where = _data_location(spec)

    def expect(column, role, accepted):
        if column not in types:
            errors.append(_absent(spec, where, column, role, sorted(types)))
        elif types[column] not in accepted:
            found = types[column]
            detail = _locate_bad_values(spec, column) if found == BYTES else ""
            errors.append(
                f"{where}: column {column!r} ({role}) holds {_describe({found})}, "
                f"but a {role.split(' ', 1)[1]} needs {_describe(accepted)}{detail}"
            )

    for i in spec.inputs:
        for column in i.columns:
            expect(column, f"input '{i.name}' ({i.modality})", i.modality_type.schema_types)
            if column not in types:
                continue
            column_stats = {
                split: f
                for split, split_stats in stats.items()
                if (f := _feature(split_stats, column))
            }
            cells = functools.partial(_cells, spec, column)
            for problem in i.modality_type.input_checks(
                i, column, types[column], column_stats, cells
            ):
                errors.append(f"{where}: {problem}")
    for o in spec.outputs:
        head_type = o.head_type
        expect(o.column, f"output '{o.name}' ({o.type} label)", head_type.schema_types)
        if o.column not in types:
            continue
        column_stats = {
            split: f
            for split, split_stats in stats.items()
            if (f := _feature(split_stats, o.column))
        }
        for problem in head_type.label_checks(o, types[o.column], column_stats):
            errors.append(f"{where}: {problem}")
        for note in head_type.label_notes(o, types[o.column], column_stats):
            warnings.append(f"{where}: {note}")
        labelled = {}
        for split, split_stats in sorted(stats.items()):
            common = _common_stats(split_stats, o.column)
            total = int(split_stats.num_examples)
            if common is not None:
                count = int(common.num_missing)
            else:  # no such column in this split: every example misses it
                count = total if _feature(split_stats, o.column) is None else 0
            labelled[split] = (total - count, total)
            missing = _num_missing(common)
            if missing and o.missing_label == "error":
                lines = _locate_bad_values(spec, o.column, empty=True)
                errors.append(
                    f"{where}: label column {o.column!r} (output '{o.name}') is "
                    f"empty or missing in {missing} of split '{split}'; drop or fill "
                    f"those rows before training (or set `missing_label: mask`){lines}"
                )
        if o.missing_label == "error":
            continue
        counts = ", ".join(f"{n} of {t} in '{s}'" for s, (n, t) in labelled.items())
        if any(n < t for n, t in labelled.values()):
            meaning = (
                "weigh 0 for this head only"
                if o.missing_label == "mask"
                else "weigh 0 for every head (missing_label: drop)"
            )
            warnings.append(
                f"{where}: output '{o.name}' (column {o.column!r}) has a label in {counts}; "
                f"the other rows {meaning}"
            )
        for split, (n, total) in labelled.items():
            if n < o.min_labelled:
                errors.append(
                    f"{where}: output '{o.name}' (column {o.column!r}) has {n} labelled "
                    f"example(s) of {total} in split '{split}', fewer than its min_labelled "
                    f"({o.min_labelled}): it can be neither trained nor evaluated"
                )
    for s in spec.slices:
        accepted = {INT, FLOAT} if s.bucket_width else {INT, FLOAT, BYTES}
        expect(s.column, f"slice '{s.name}'", accepted)

    for split, result in sorted(anomalies.items()):
        for key, info in sorted(result.anomaly_info.items()):
            feature = _column_of(key)
            kinds = {r.type for r in info.reason}
            line = (
                f"{where} (split '{split}'): column {feature!r}: "
                f"{info.short_description or 'anomaly'}: {info.description}"
            )
            if kinds and kinds <= NON_BLOCKING:
                warnings.append(line)
            elif types.get(feature) in (INT, FLOAT):  # point at the rows that are not numbers
                errors.append(line + _locate_bad_values(spec, feature))
            else:
                errors.append(line)
        if result.HasField("dataset_anomaly_info"):
            info = result.dataset_anomaly_info
            errors.append(
                f"{where} (split '{split}'): {info.short_description}: " f"{info.description}"
            )
    return errors, warnings


def _absent(spec: Spec, where: str, column: str, role: str, found: list[str]) -> str:
    """Why a column has no feature: empty in every row of the files that have it, or not there
    (with the nearest names)."""
    with_header = [path for path, header in _csv_headers(spec) if column in header]
    if with_header:
        return (
            f"{', '.join(with_header)}: column {column!r} ({role}) is empty (or a missing-value "
            "token) in every row; fill it, or take it out of the spec"
        )
    near = difflib.get_close_matches(column, found, n=2)
    hint = f"; did you mean {' or '.join(map(repr, near))}?" if near else ""
    return f"{where}: column {column!r} ({role}) is not in the data{hint} (columns found: {', '.join(found)})"


def _csv_headers(spec: Spec):
    """(path, header) of every CSV data file (none for other formats)."""
    if spec.data.format != "csv":
        return
    for pattern in spec.data.patterns.values():
        for path in sorted(tf.io.gfile.glob(os.path.join(spec.data.root, pattern))):
            yield path, read_header(path, spec.data.encoding)


def _describe(types) -> str:
    if BYTES in types:
        return "strings" if len(types) == 1 else "any values"
    if types == {INT}:
        return "integers"
    return "numbers"


def _data_location(spec: Spec) -> str:
    patterns = list(spec.data.patterns.values())
    if len(patterns) == 1:
        return os.path.join(spec.data.root, patterns[0])
    return spec.data.root


def _feature(stats: statistics_pb2.DatasetFeatureStatistics, column: str):
    """The column's FeatureNameStatistics in one split (None when absent)."""
    for f in stats.features:
        if (f.path.step and f.path.step[0] == column) or f.name == column:
            return f
    return None


def _common_stats(stats: statistics_pb2.DatasetFeatureStatistics, column: str):
    """The column's CommonStatistics in one split (None when the split has no such column)."""
    f = _feature(stats, column)
    kind = f.WhichOneof("stats") if f is not None else None
    return getattr(f, kind).common_stats if kind else None


def _num_missing(common) -> str:
    """'' when every example has a value, else how many lack one (as words)."""
    if common is None:
        return ""
    if common.num_missing:
        return f"{int(common.num_missing)} example(s)"
    if common.min_num_values == 0:  # present but empty (CSV: an empty cell)
        return "some examples"
    return ""


def _cells(spec: Spec, column: str):
    """("<file> line <n>", text) of every non-missing cell of `column` in the CSV data files."""
    missing = CsvOptions(spec.data.na_values, spec.data.column_na_values).missing_tokens(column)
    for path, header in _csv_headers(spec):
        if column not in header:
            continue
        index = header.index(column)
        for line, cells in iter_rows(path, len(header), spec.data.encoding):
            if cells[index].strip() not in missing:
                yield f"{path} line {line}", cells[index]


def _locate_bad_values(spec: Spec, column: str, empty: bool = False, limit: int = 3) -> str:
    """For CSV data: the first lines whose value in `column` is not a number (or is empty)."""
    hits = []
    missing = CsvOptions(spec.data.na_values, spec.data.column_na_values).missing_tokens(column)
    for path, header in _csv_headers(spec):
        if column not in header:
            continue
        index = header.index(column)
        for line, cells in iter_rows(path, len(header), spec.data.encoding):
            value = cells[index]
            if empty:
                bad = value.strip() in missing
            elif value.strip() in missing:
                continue
            else:
                try:
                    float(value)
                    bad = False
                except ValueError:
                    bad = True
            if bad:
                hits.append(f"{path} line {line}: {value!r}")
                if len(hits) >= limit:
                    return "; first: " + "; ".join(hits)
    return "; first: " + "; ".join(hits) if hits else ""


def _column_of(anomaly_key: str) -> str:
    """The column an anomaly is keyed by: TFDV quotes a name holding '.', '(' or ')' ('a.b')."""
    if len(anomaly_key) > 1 and anomaly_key[0] == anomaly_key[-1] == "'":
        return anomaly_key[1:-1].replace("''", "'")
    return anomaly_key


def _load_by_split(artifact, filename: str, proto_cls) -> dict:
    out = {}
    for split in standard_artifact_utils.decode_split_names(artifact.split_names):
        path = os.path.join(standard_artifact_utils.get_split_uri([artifact], split), filename)
        if tf.io.gfile.exists(path):
            msg = proto_cls()
            msg.ParseFromString(io_utils.read_bytes_file(path))
            out[split] = msg
    return out


def read_data_artifacts(statistics, schema, anomalies) -> tuple:
    """(schema, {split: DatasetFeatureStatistics}, {split: Anomalies}) of the artifacts, as
    check_data takes them."""
    stats = {
        split: lst.datasets[0]
        for split, lst in _load_by_split(
            statistics, "FeatureStats.pb", statistics_pb2.DatasetFeatureStatisticsList
        ).items()
        if lst.datasets
    }
    found = _load_by_split(anomalies, "SchemaDiff.pb", anomalies_pb2.Anomalies)
    return _load_schema(schema), stats, found


def _load_schema(artifact) -> schema_pb2.Schema:
    path = os.path.join(artifact.uri, "schema.pbtxt")
    return io_utils.parse_pbtxt_file(path, schema_pb2.Schema())


def check_drift(
    spec: Spec,
    schema: schema_pb2.Schema,
    stats: "dict[str, statistics_pb2.DatasetFeatureStatistics]",
    published_dir: str,
    record: dict,
    span: int | None,
) -> "tuple[list[str], list[str], str]":
    """(errors, warnings, table): every compared input's training data against the data the
    published model was trained on (what PublishedBaseline copied into `published_dir`);
    over-threshold inputs are errors with `on_drift: stop`, else warnings. `drift_findings`
    gives the measurements themselves (the run report's)."""
    from pipeline.monitoring import drift

    published = drift.read_published(published_dir)
    what = f"the published version {record.get('version')}"
    if published is None or "train" not in stats:
        note = f"drift not checked: {what} carries no statistics of its training data"
        return [], ([note] if published is None else []), ""
    findings, title, gone = drift_findings(spec, schema, stats, published[0], record, span)
    warnings = [
        f"input column {c!r}: drift not checked (one of the two training sets lacks it)"
        for c in gone
    ]
    over = [f.line("drift") for f in findings if f.over]
    if spec.monitoring["on_drift"] == "stop":
        return over, warnings, drift.table(findings, title)
    return [], warnings + over, drift.table(findings, title)


def drift_findings(spec: Spec, schema, stats: dict, control, record: dict, span):
    """(Findings, title, columns not compared) of the training split against `control` (the
    published version's training statistics)."""
    from pipeline.monitoring import drift

    current = statistics_pb2.DatasetFeatureStatisticsList(datasets=[stats["train"]])
    thresholds = drift.input_thresholds(spec)
    gone = drift.missing(current, control, thresholds)
    thresholds = {c: t for c, t in thresholds.items() if c not in gone}
    findings = drift.compare(current, control, schema, thresholds) if thresholds else []
    against = f"span {span}" if span is not None else "this data"
    trained = record.get("span") if span is not None else None
    title = (
        f"Drift of the training data ({against}) against the data of the published version "
        f"{record.get('version')}"
        + (f" (span {trained})" if trained is not None else "")
        + f", on_drift: {spec.monitoring['on_drift']}:"
    )
    return findings, title, gone


def published_drift(spec: Spec, examples, baseline, schema, stats):
    """drift_findings against what PublishedBaseline copied (None: nothing to compare with),
    for the span the Examples hold."""
    from components.baseline import baseline_record
    from pipeline.monitoring import drift

    record = baseline_record(baseline.uri) if baseline is not None else None
    published = drift.read_published(baseline.uri) if record and record.get("monitoring") else None
    if published is None or "train" not in stats:
        return None
    span = examples.get_int_custom_property(constants.SPAN) if spec.data.spans else None
    return drift_findings(spec, schema, stats, published[0], record, span)


@component
def DataGate(  # noqa: N802 - a TFX component is named like a class
    statistics: InputArtifact[standard_artifacts.ExampleStatistics],
    schema: InputArtifact[standard_artifacts.Schema],
    anomalies: InputArtifact[standard_artifacts.ExampleAnomalies],
    spec: Parameter[str],
    examples: InputArtifact[standard_artifacts.Examples] = None,
    baseline: InputArtifact[standard_artifacts.Model] = None,
) -> None:
    """Fails the run with a readable summary when the data is not fit to transform, or (with
    `monitoring.on_drift: stop`) when an input drifted from the published model's data."""
    import dataclasses

    from components.baseline import baseline_record

    parsed = Spec.from_dict(json.loads(spec))
    span = version = None
    if examples is not None and parsed.data.spans:  # the files of the span ExampleGen read
        span = examples.get_int_custom_property(constants.SPAN)
        version = examples.get_int_custom_property(constants.VERSION) or None
        parsed = dataclasses.replace(parsed, data=parsed.data.for_span(span, version))
        print(f"[DataGate] span {span}" + (f", version {version}" if version else ""))
    data = read_data_artifacts(statistics, schema, anomalies)
    errors, warnings = check_data(parsed, *data)
    record = baseline_record(baseline.uri) if baseline is not None else None
    if record and record.get("monitoring"):
        drifted, notes, text = check_drift(parsed, data[0], data[1], baseline.uri, record, span)
        if text:
            print(f"[DataGate] {text}")
        errors += drifted
        warnings += notes
    elif record is not None:
        print(f"[DataGate] drift not checked: {record.get('reason') or 'no statistics published'}")
    for w in warnings:
        print(f"[DataGate] warning: {w}")
    if errors:
        raise DataValidationError(
            "The data does not fit the schema or the spec; stopped before Transform "
            f"({len(errors)} problem(s)):\n  - " + "\n  - ".join(errors)
        )

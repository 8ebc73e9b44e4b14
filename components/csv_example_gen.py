"""CsvExampleGen for users' own CSV files: missing-value tokens, columns typed by the spec, and a
one-line error naming the file and line for anything that cannot be read.

It is TFX's file-based ExampleGen with an executor of our own (TFX's extension point for an input
format: `BaseExampleGenExecutor.GetInputSourceToExamplePTransform`), so it is still a Beam
pipeline on any Beam runner, splits and spans work as in TFX, and the output is TFX's Examples.
What it does differently from TFX's CSV executor:

- **Missing values** written as tokens (`NA`, `N/A`, `null`, ...: `data.na_values`, per column
  `data.column_na_values`) are missing, before statistics: a numeric column with `NA`s is numeric.
  An empty cell is always missing.
- **Columns typed by the spec**: the modality or head reading a column says how it is typed
  (`csv_type`: numbers stay float, so a column that held only integers in training still takes
  `181.5` later; a categorical column of codes stays a string, keeping `02139`'s zero). Other
  columns are typed from their values across **every** split's files (TFX types each split on
  its own, and a column that is integer in one split and decimal in the other breaks the schema).
- **Readable errors** (`DataValidationError`, printed by the runners as they are): an empty or
  header-only file, duplicate or blank column names, a row with a wrong number of cells, a quoted
  field left open (a cut file), bytes the file's encoding (`data.encoding`, default UTF-8) cannot decode - each with the file and line.
- Cells of any size (TFX stops at Python's 128 KB field limit); a UTF-8 byte-order mark is skipped.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import apache_beam as beam
import tensorflow as tf
from google.protobuf import any_pb2, json_format, struct_pb2
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from components.errors import DataValidationError
from pipeline.constants import DEFAULT_NA_VALUES

FIELD_SIZE_LIMIT = 1 << 30  # 1 GiB: a cell of any realistic size (text modalities truncate)

# Column types, ordered: a column takes the widest kind among its values.
INT, FLOAT, BYTES = "INT", "FLOAT", "BYTES"
_ORDER = {None: 0, INT: 1, FLOAT: 2, BYTES: 3}
_INT = re.compile(r"[+-]?\d+")
_INT64_MAX = 2**63 - 1
csv.field_size_limit(FIELD_SIZE_LIMIT)  # in every process that reads CSV through this module


@dataclass(frozen=True)
class CsvOptions:
    """How cells are read: which tokens mean missing, and the columns whose type is fixed."""

    na_values: tuple = DEFAULT_NA_VALUES
    column_na_values: dict = field(default_factory=dict)  # column -> its own tokens
    column_types: dict = field(default_factory=dict)  # column -> FLOAT | BYTES (else inferred)
    encoding: str = "utf-8"  # data.encoding
    # The reader's code fingerprint: a change re-runs ExampleGen (TFX cannot see this code).
    code: str = ""

    def missing_tokens(self, column: str) -> frozenset:
        """Cells (compared after stripping spaces) that mean "no value" in this column."""
        return frozenset(self.column_na_values.get(column, self.na_values)) | {""}

    def to_config(self) -> example_gen_pb2.CustomConfig:
        struct = struct_pb2.Struct()
        struct.update(
            {
                "na_values": list(self.na_values),
                "column_na_values": {k: list(v) for k, v in self.column_na_values.items()},
                "column_types": dict(self.column_types),
                "encoding": self.encoding,
                "code": self.code,
            }
        )
        packed = any_pb2.Any()
        packed.Pack(struct)
        return example_gen_pb2.CustomConfig(custom_config=packed)

    @classmethod
    def from_exec_properties(cls, exec_properties: dict) -> CsvOptions:
        raw = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
        if not raw:
            return cls()
        config = proto_utils.json_to_proto(raw, example_gen_pb2.CustomConfig())
        struct = struct_pb2.Struct()
        config.custom_config.Unpack(struct)
        values = json_format.MessageToDict(struct)
        return cls(
            na_values=tuple(values.get("na_values", DEFAULT_NA_VALUES)),
            column_na_values={k: tuple(v) for k, v in values.get("column_na_values", {}).items()},
            column_types=dict(values.get("column_types", {})),
            encoding=values.get("encoding", "utf-8"),
        )


# -- reading files --------------------------------------------------------------------------------
@contextlib.contextmanager
def _text_lines(path: str, encoding: str = "utf-8"):
    """The file's lines as text, decoded one by one so that a bad byte is reported on its line;
    a UTF-8 byte-order mark is dropped."""
    with beam.io.filesystems.FileSystems.open(path, compression_type="uncompressed") as f:

        def lines():
            for number, raw in enumerate(f, start=1):
                try:
                    text = raw.decode(encoding)
                except UnicodeDecodeError as e:
                    byte = e.object[e.start : e.start + 1].hex()
                    raise DataValidationError(
                        f"{path}, line {number}: not {encoding} text (byte 0x{byte}); if it is a "
                        "CSV file in another encoding, name it (e.g. `data.encoding: latin-1` "
                        "in the spec)"
                    ) from None
                yield text.lstrip("\ufeff") if number == 1 else text

        yield lines()


def read_header(path: str, encoding: str = "utf-8") -> list[str]:
    """The file's column names; stops on an empty or unreadable file and on duplicate or blank
    names (which would silently feed one column's values to another's feature)."""
    try:
        with _text_lines(path, encoding) as lines:
            header = next(csv.reader(lines, strict=True), None)
    except csv.Error as e:
        raise DataValidationError(
            f"{path}, line 1: the header line is not valid CSV: {e}"
        ) from None
    if not header or header == [""]:
        raise DataValidationError(f"{path}: the file is empty (no header line)")
    seen = {}
    for position, name in enumerate(header, start=1):
        if not name.strip():
            raise DataValidationError(
                f"{path}: column {position} of the header has no name; name it or remove it"
            )
        if name in seen:
            raise DataValidationError(
                f"{path}: the header names column {name!r} twice (columns {seen[name]} and "
                f"{position}); rename one, or the second would silently replace the first"
            )
        seen[name] = position
    return header


def iter_rows(
    path: str, n_columns: int, encoding: str = "utf-8"
) -> Iterator[tuple[int, list[str]]]:
    """(line number where the row starts, cells) for every non-blank row after the header."""
    line = 1
    with _text_lines(path, encoding) as lines:
        reader = csv.reader(lines, strict=True)
        try:
            next(reader, None)
            while True:
                line = reader.line_num + 1
                cells = next(reader, None)
                if cells is None:
                    return
                if not cells:
                    continue  # a blank line
                if len(cells) != n_columns:
                    raise DataValidationError(
                        f"{path}, line {line}: {len(cells)} cell(s), but the header names "
                        f"{n_columns} columns (a stray delimiter or quote, or a file cut short?)"
                    )
                yield line, cells
        except csv.Error as e:
            hint = (
                "; a quoted field is never closed: is the file cut short?"
                if "end of data" in str(e)
                else ""
            )
            raise DataValidationError(f"{path}, line {line}: not valid CSV: {e}{hint}") from None


def value_kind(cell: str) -> str:
    """INT, FLOAT or BYTES: the narrowest type that holds this (non-missing) cell."""
    text = cell.strip()
    if _INT.fullmatch(text) and abs(int(text)) <= _INT64_MAX:
        return INT
    if "_" not in text:
        try:
            float(text)
            return FLOAT
        except ValueError:
            pass
    return BYTES


def column_kinds(missing: list[frozenset], cells: list[str]) -> list:
    """Each cell's kind (None: missing); `missing[i]` holds column i's missing-value tokens."""
    return [
        None if cell.strip() in tokens else value_kind(cell)
        for tokens, cell in zip(missing, cells, strict=True)
    ]


def merge_kinds(a: list, b: list) -> list:
    return [x if _ORDER[x] >= _ORDER[y] else y for x, y in zip(a, b, strict=True)]


def resolve_types(header: list[str], kinds: list, options: CsvOptions) -> list:
    """The type written for each column: the spec's when the values allow it (a float column of
    integers; any column as a string), else the values' own; None for a column with no value."""
    types = []
    for name, kind in zip(header, kinds, strict=True):
        wanted = options.column_types.get(name)
        if wanted == BYTES or (wanted == FLOAT and kind in (None, INT, FLOAT)):
            types.append(wanted)
        else:
            types.append(kind)
    return types


def to_example(header: list[str], types: list, missing: list[frozenset], cells: list[str]):
    """One row as a tf.Example; a missing cell is an absent feature (TFDV counts it missing)."""
    features = {}
    for name, kind, tokens, cell in zip(header, types, missing, cells, strict=True):
        if kind is None or cell.strip() in tokens:
            continue
        if kind == INT:
            feature = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(cell)]))
        elif kind == FLOAT:
            feature = tf.train.Feature(float_list=tf.train.FloatList(value=[float(cell)]))
        else:
            feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[cell.encode()]))
        features[name] = feature
    return tf.train.Example(features=tf.train.Features(feature=features))


# -- the Beam transform ---------------------------------------------------------------------------
def _files(input_base: str, pattern: str) -> list[str]:
    return sorted(tf.io.gfile.glob(os.path.join(input_base, pattern)))


def _has_rows(path: str, n_columns: int, encoding: str) -> bool:
    return next(iter_rows(path, n_columns, encoding), None) is not None


def check_files(split_files: list[str], other_files: list[str], options: CsvOptions) -> list[str]:
    """The split's common header, after checking every file's header (here, before Beam runs, so
    the message reaches the user as it is) and that the split has at least one row."""
    header, first = None, None
    for path in split_files + other_files:
        names = read_header(path, options.encoding)
        if header is None:
            header, first = names, path
        elif names != header:
            raise DataValidationError(
                f"{path}: its header differs from {first}'s (every data file needs the same "
                f"columns in the same order): {names} vs {header}"
            )
    unknown = sorted(set(options.column_na_values) - set(header))
    if unknown:
        raise DataValidationError(
            f"data.column_na_values names column(s) {unknown} that {first} does not have; "
            f"its columns: {header}"
        )
    if not any(_has_rows(path, len(header), options.encoding) for path in split_files):
        raise DataValidationError(
            f"{', '.join(split_files)}: a header line but no rows; "
            "the data has nothing to train or evaluate on"
        )
    return header


class _ReadRows(beam.DoFn):
    def __init__(self, n_columns: int, encoding: str):
        self._n_columns, self._encoding = n_columns, encoding

    def process(self, path: str):
        for _, cells in iter_rows(path, self._n_columns, self._encoding):
            yield cells


class _MergeKinds(beam.CombineFn):
    def __init__(self, n_columns: int):
        self._n_columns = n_columns

    def create_accumulator(self):
        return [None] * self._n_columns

    def add_input(self, accumulator, kinds):
        return merge_kinds(accumulator, kinds)

    def merge_accumulators(self, accumulators):
        result = self.create_accumulator()
        for acc in accumulators:
            result = merge_kinds(result, acc)
        return result

    def extract_output(self, accumulator):
        return accumulator


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def _CsvToExample(pipeline, exec_properties: dict, split_pattern: str):  # noqa: N802 - TFX's name
    """The split's rows as tf.Examples; types are inferred over every split's files."""
    options = CsvOptions.from_exec_properties(exec_properties)
    input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    input_config = proto_utils.json_to_proto(
        exec_properties[standard_component_specs.INPUT_CONFIG_KEY], example_gen_pb2.Input()
    )
    split_files = _files(input_base, split_pattern)
    if not split_files:
        raise DataValidationError(f"no data file matches {os.path.join(input_base, split_pattern)}")
    other_files = sorted(
        {f for s in input_config.splits for f in _files(input_base, s.pattern)} - set(split_files)
    )
    header = check_files(split_files, other_files, options)
    n = len(header)
    missing = [options.missing_tokens(column) for column in header]

    rows = (
        pipeline
        | "SplitFiles" >> beam.Create(split_files)
        | "Read" >> beam.ParDo(_ReadRows(n, options.encoding))
    )
    typed_from = rows
    if other_files:
        others = (
            pipeline
            | "OtherSplitsFiles" >> beam.Create(other_files)
            | "ReadOtherSplits" >> beam.ParDo(_ReadRows(n, options.encoding))
        )
        typed_from = (rows, others) | "AllRows" >> beam.Flatten()
    kinds = (
        typed_from
        | "Kinds" >> beam.Map(lambda cells: column_kinds(missing, cells))
        | "MergeKinds" >> beam.CombineGlobally(_MergeKinds(n))
    )
    types = beam.pvalue.AsSingleton(
        kinds | "Resolve" >> beam.Map(lambda k: resolve_types(header, k, options))
    )
    return rows | "ToExample" >> beam.Map(
        lambda cells, t: to_example(header, t, missing, cells), types
    )


class Executor(BaseExampleGenExecutor):
    """TFX's ExampleGen executor reading CSV as described in this module's docstring."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:  # noqa: N802 - TFX's name
        return _CsvToExample


def CsvExampleGen(  # noqa: N802 - builds a component, named like TFX's
    input_base, input_config, output_config, options: CsvOptions
) -> FileBasedExampleGen:
    """The component, with TFX's CsvExampleGen's id (artifacts, runs and notebooks find it so)."""
    return FileBasedExampleGen(
        input_base=input_base,
        input_config=input_config,
        output_config=output_config,
        custom_config=options.to_config(),
        custom_executor_spec=executor_spec.BeamExecutorSpec(Executor),
    ).with_id("CsvExampleGen")

"""CsvExampleGen on users' CSVs: its TFX executor run with Beam on small files, and its errors."""

import glob
import os

import pytest
import tensorflow as tf
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from components.csv_example_gen import CsvOptions, Executor, iter_rows, read_header
from components.errors import DataValidationError
from pipeline.constants import DEFAULT_NA_VALUES

HEADER = "ID,Length (cm),zip code,Country,note.txt,Score\n"


def run_example_gen(tmp_path, files: dict, options: CsvOptions, splits=("train", "eval")):
    """Writes `files` under tmp_path/data, runs the executor with one file pattern per split, and
    returns {split: [tf.Example as {feature: value or None}]}."""
    data = tmp_path / "data"
    data.mkdir()
    for name, text in files.items():
        (data / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    input_config = example_gen_pb2.Input(
        splits=[example_gen_pb2.Input.Split(name=s, pattern=f"{s}*.csv") for s in splits]
    )
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    exec_properties = {
        standard_component_specs.INPUT_BASE_KEY: str(data),
        standard_component_specs.INPUT_CONFIG_KEY: proto_utils.proto_to_json(input_config),
        standard_component_specs.OUTPUT_CONFIG_KEY: proto_utils.proto_to_json(
            example_gen_pb2.Output()
        ),
        standard_component_specs.CUSTOM_CONFIG_KEY: proto_utils.proto_to_json(options.to_config()),
        standard_component_specs.OUTPUT_DATA_FORMAT_KEY: example_gen_pb2.FORMAT_TF_EXAMPLE,
        standard_component_specs.OUTPUT_FILE_FORMAT_KEY: example_gen_pb2.FORMAT_TFRECORDS_GZIP,
    }
    Executor().Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]}, exec_properties)
    out = {}
    for split in splits:
        records = glob.glob(os.path.join(examples.uri, f"Split-{split}", "*"))
        rows = []
        for record in tf.data.TFRecordDataset(records, compression_type="GZIP"):
            example = tf.train.Example.FromString(record.numpy())
            row = {}
            for name, feature in example.features.feature.items():
                kind = feature.WhichOneof("kind")
                row[name] = (kind, list(getattr(feature, kind).value))
            rows.append(row)
        out[split] = sorted(rows, key=lambda r: r["ID"][1])
    return out


def test_tokens_are_missing_and_columns_are_typed_by_the_spec_across_splits(tmp_path):
    train = HEADER + (
        '1,12,02139,NA,"said ""hi""",3\n'
        "2,NA,10001,France,null,N/A\n"
        '3, N/A ,NA,Germany,"two\nlines",?\n'
    )
    evaluation = HEADER + "4,12.5,94103,,None,5\n"
    options = CsvOptions(
        na_values=DEFAULT_NA_VALUES + ("?",),
        column_na_values={"Country": ("",)},  # "NA" is Namibia here
        column_types={"zip code": "BYTES", "Score": "FLOAT"},  # as a categorical / a regression
    )
    out = run_example_gen(tmp_path, {"train.csv": train, "eval.csv": evaluation}, options)
    first, second, third = out["train"]
    # 'Length (cm)' holds integers in train and 12.5 in eval: float in both splits.
    assert first["Length (cm)"] == ("float_list", [12.0])
    assert out["eval"][0]["Length (cm)"] == ("float_list", [12.5])
    # Missing tokens (trimmed) are absent features; the column's own list wins.
    assert "Length (cm)" not in second and "Length (cm)" not in third
    assert "note.txt" not in second and "Score" not in second and "Score" not in third
    assert first["Country"] == ("bytes_list", [b"NA"])
    assert "Country" not in out["eval"][0]
    assert "zip code" not in third
    # Types the spec fixes: codes stay strings (the zero kept), an integer label is a float.
    assert first["zip code"] == ("bytes_list", [b"02139"])
    assert first["Score"] == ("float_list", [3.0])
    assert first["ID"] == ("int64_list", [1])
    # Quotes and a line break inside a quoted cell, as the csv module reads them.
    assert first["note.txt"] == ("bytes_list", [b'said "hi"'])
    assert third["note.txt"] == ("bytes_list", [b"two\nlines"])


def test_a_spec_number_column_holding_words_is_left_for_the_data_gate_to_name(tmp_path):
    """A column the spec reads as numbers but that holds words stays strings: the data gate then
    names the column and the first offending lines (rather than a parse error here)."""
    text = "ID,Runtime\n1,90\n2,two hours\n"
    out = run_example_gen(
        tmp_path,
        {"train.csv": text},
        CsvOptions(column_types={"Runtime": "FLOAT"}),
        splits=("train",),
    )
    assert [r["Runtime"] for r in out["train"]] == [
        ("bytes_list", [b"90"]),
        ("bytes_list", [b"two hours"]),
    ]


def test_a_bad_row_deep_in_a_file_stops_beam_with_the_file_and_line(tmp_path):
    rows = "".join(f"{i},1,2,x,y,3\n" for i in range(50))
    text = HEADER + rows + "51,1,2,x\n" + rows
    with pytest.raises(DataValidationError) as error:
        run_example_gen(tmp_path, {"train.csv": text}, CsvOptions(), splits=("train",))
    path = tmp_path / "data" / "train.csv"
    assert f"{path}, line 52: 4 cell(s), but the header names 6 columns" in str(error.value)


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "{path}: the file is empty (no header line)"),
        (
            "ID,Director,Title,Director\n1,a,b,c\n",
            "{path}: the header names column 'Director' twice (columns 2 and 4); rename one",
        ),
        ("ID,,Title\n1,2,3\n", "{path}: column 2 of the header has no name"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "{path}, line 1: not utf-8 text (byte 0x89)"),
    ],
    ids=["empty", "duplicate", "blank-name", "binary"],
)
def test_headers_that_cannot_be_read_are_named(tmp_path, content, message):
    path = write(tmp_path, "x.csv", content)
    with pytest.raises(DataValidationError) as error:
        read_header(path)
    assert message.format(path=path) in str(error.value)


@pytest.mark.parametrize(
    "content, message",
    [
        (
            'ID,Title\n1,ok\n2,"Cut in the midd',
            "{path}, line 3: not valid CSV: unexpected end of data; a quoted field is never "
            "closed: is the file cut short?",
        ),
        ("ID,Title\n1,ok\n2\n", "{path}, line 3: 1 cell(s), but the header names 2 columns"),
        (
            "ID,Title\n1,ok\n2,caf\xe9\n".encode("latin-1"),
            "{path}, line 3: not utf-8 text (byte 0xe9); if it is a CSV file in another "
            "encoding, name it (e.g. `data.encoding: latin-1` in the spec)",
        ),
    ],
    ids=["cut-quote", "short-row", "latin-1"],
)
def test_rows_that_cannot_be_read_are_named_with_their_line(tmp_path, content, message):
    path = write(tmp_path, "x.csv", content)
    with pytest.raises(DataValidationError) as error:
        list(iter_rows(path, 2))
    assert message.format(path=path) in str(error.value)


def test_a_latin_1_file_is_read_with_its_encoding(tmp_path):
    path = write(tmp_path, "x.csv", "ID,Title\n1,caf\xe9\n".encode("latin-1"))
    assert list(iter_rows(path, 2, "latin-1")) == [(2, ["1", "caf\xe9"])]


def test_a_header_only_file_and_a_huge_cell_and_a_byte_order_mark(tmp_path):
    header_only = write(tmp_path, "train.csv", "ID,Title\n")
    from components.csv_example_gen import check_files

    with pytest.raises(DataValidationError, match="a header line but no rows"):
        check_files([header_only], [], CsvOptions())
    big = "word " * 300_000  # 1.5 MB in one cell: beyond Python's default 128 KB field limit
    out = run_example_gen(
        tmp_path,
        {"train.csv": "\ufeffID,Text\n1," + big + "\n2,short\n"},
        CsvOptions(),
        splits=("train",),
    )
    first, second = out["train"]
    assert set(first) == {"ID", "Text"}  # the byte-order mark is not part of the first name
    assert first["Text"][1][0].decode() == big and second["Text"] == ("bytes_list", [b"short"])

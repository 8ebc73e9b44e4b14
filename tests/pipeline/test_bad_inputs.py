"""Bad input, as users bring it: every case gets a short answer naming the file, line or column,
an exit code, no traceback, nothing trained when it should stop, and the registry untouched.

Each case runs `mimo` in this process (the real CLI, the real LocalDagRunner and components on
the movies fixture); the cases that reach the data gate run StatisticsGen first (e2e).
"""

from __future__ import annotations

import gzip
import logging
import os
import time
from dataclasses import dataclass, field

import pytest
import yaml
from conftest import MOVIES_FIXTURE_CSV, MOVIES_FIXTURE_SPEC
from helpers import card_evaluation, fake_saved_model

from components.registry import Registry
from pipeline.cli import main
from pipeline.runners.local import latest_run_outputs, output_lock, run_paths
from pipeline.spec import load_spec

FIXTURE_LINES = open(MOVIES_FIXTURE_CSV, encoding="utf-8").read().splitlines(keepends=True)
HEADER = FIXTURE_LINES[0].rstrip("\n").split(",")


@dataclass
class Case:
    """`setup(folder)` writes the spec and data into `folder` and returns the `mimo` arguments
    (for `run`, --output and --registry are added). `says`: fragments of the answer ({dir} is the
    case's folder). `stops_before`: a component that must not have run."""

    name: str
    setup: object
    code: int
    says: list[str]
    stops_before: str | None = None
    marks: list = field(default_factory=list)


def spec_with(folder, csv_lines=None, edit=None, csv_name="movies.csv", raw_text=None):
    """The fixture spec in `folder` (its CSV replaced by `csv_lines` when given), edited by
    `edit(raw)`; returns the spec path."""
    with open(MOVIES_FIXTURE_SPEC, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    lines = FIXTURE_LINES if csv_lines is None else csv_lines
    data = "".join(lines).encode("utf-8") if isinstance(lines, list) else lines
    (folder / csv_name).write_bytes(data)
    raw["data"]["path"] = csv_name
    if edit:
        edit(raw)
    path = folder / "spec.yaml"
    path.write_text(raw_text if raw_text is not None else yaml.safe_dump(raw, sort_keys=False))
    return path


def run(spec_path):
    return ["run", "--spec", str(spec_path)]


def with_row(line_no, row):
    """The fixture with its data line `line_no` (1 = the header) replaced by `row`."""
    lines = list(FIXTURE_LINES)
    lines[line_no - 1] = row
    return lines


def cells(line_no):
    import csv

    return next(csv.reader([FIXTURE_LINES[line_no - 1]]))


def joined(values):
    import csv
    import io

    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(values)
    return out.getvalue()


def column_blank(column):
    """The fixture with `column` empty in every row."""
    index = HEADER.index(column)
    rows = [cells(i + 1) for i in range(len(FIXTURE_LINES))]
    return [joined(r if n == 0 else r[:index] + [""] + r[index + 1 :]) for n, r in enumerate(rows)]


def two_files_types_differ(folder):
    """train.csv and validation.csv with integer runtimes, eval.csv with a word in one runtime."""
    rows = FIXTURE_LINES[1:]
    (folder / "data").mkdir()
    (folder / "data" / "train.csv").write_text(FIXTURE_LINES[0] + "".join(rows[:250]))
    (folder / "data" / "validation.csv").write_text(FIXTURE_LINES[0] + "".join(rows[250:300]))
    bad = cells(302)
    bad[HEADER.index("Runtime")] = "two hours"
    (folder / "data" / "eval.csv").write_text(FIXTURE_LINES[0] + joined(bad) + "".join(rows[301:]))

    def edit(raw):
        raw["data"].update(
            path="data", split={s: f"{s}.csv" for s in ("train", "validation", "eval")}
        )
        raw["data"].pop("split_key")

    return run(spec_with(folder, edit=edit, csv_name="unused.csv"))


def latin_1_byte_on_line(line_no):
    """The fixture's bytes with an 'é' written as latin-1 (one byte, 0xe9) on line `line_no`."""
    lines = [line.encode("utf-8") for line in FIXTURE_LINES]
    lines[line_no - 1] = lines[line_no - 1].replace(b",", b",\xe9", 1)
    return b"".join(lines)


def broken_schema(folder):
    (folder / "schema.pbtxt").write_text('feature {\n  name: "Title"\n  type: TEXT\n')
    return "schema.pbtxt"


def folder_among_data_files(folder):
    """data/*.csv matches movies.csv and a folder old.csv/ (a backup someone made)."""
    (folder / "data" / "old.csv").mkdir(parents=True)
    (folder / "data" / "movies.csv").write_text("".join(FIXTURE_LINES))
    return run(spec_with(folder, edit=lambda r: r["data"].update(path="data/*.csv")))


def _rename(raw, **changes):
    raw.update(changes)


CASES = [
    # -- the data files ---------------------------------------------------------------------
    Case(
        "duplicate header names",
        lambda d: run(
            spec_with(d, [FIXTURE_LINES[0].replace("Writer", "Director")] + FIXTURE_LINES[1:])
        ),
        3,
        ["{dir}/movies.csv", "column 'Director' twice (columns 10 and 11)"],
        stops_before="StatisticsGen",
    ),
    Case(
        "cut inside a quoted field",
        lambda d: run(spec_with(d, FIXTURE_LINES[:200] + [FIXTURE_LINES[200][:150]])),
        3,
        ["{dir}/movies.csv", "line 201"],
        stops_before="StatisticsGen",
    ),
    Case(
        "a binary file (gzip) named .csv",
        lambda d: run(spec_with(d, gzip.compress("".join(FIXTURE_LINES).encode()))),
        3,
        ["{dir}/movies.csv", "line 1"],
        stops_before="StatisticsGen",
    ),
    Case(
        "latin-1 bytes in a UTF-8 file",
        lambda d: run(spec_with(d, latin_1_byte_on_line(5))),
        3,
        ["{dir}/movies.csv, line 5", "not utf-8", "data.encoding: latin-1"],
        stops_before="StatisticsGen",
    ),
    Case(
        "a header and no rows",
        lambda d: run(spec_with(d, FIXTURE_LINES[:1])),
        3,
        ["{dir}/movies.csv: a header line but no rows"],
        stops_before="StatisticsGen",
    ),
    Case(
        "an empty file",
        lambda d: run(spec_with(d, [])),
        3,
        ["{dir}/movies.csv: the file is empty"],
        stops_before="StatisticsGen",
    ),
    Case(
        "a row with too many fields",
        lambda d: run(spec_with(d, with_row(40, FIXTURE_LINES[39].rstrip("\n") + ",extra\n"))),
        3,
        ["{dir}/movies.csv", "line 40"],
        stops_before="StatisticsGen",
    ),
    Case(
        "a row with too many fields, on a portable Beam runner (its error comes back as text)",
        lambda d: [
            "portable",
            *run(spec_with(d, with_row(40, FIXTURE_LINES[39].rstrip("\n") + ",extra\n"))),
        ],
        3,
        ["{dir}/movies.csv, line 40: 16 cell(s)"],
        stops_before="StatisticsGen",
    ),
    Case(
        "a row with too few fields",
        lambda d: run(spec_with(d, with_row(41, joined(cells(41)[:5])))),
        3,
        ["{dir}/movies.csv", "line 41"],
        stops_before="StatisticsGen",
    ),
    Case(
        "a data path that matches no file",
        lambda d: run(spec_with(d, edit=lambda r: r["data"].update(path="nothing/*.csv"))),
        2,
        ["{dir}/spec.yaml: data.path: no data file matches {dir}/nothing/*.csv"],
        stops_before="StatisticsGen",
    ),
    Case(
        "a column the spec names is not in the file",
        lambda d: run(spec_with(d, edit=lambda r: r["inputs"][8].update(column="Run time"))),
        3,
        ["{dir}/movies.csv: column 'Run time'", "not in the data; did you mean 'Runtime'?"],
        stops_before="Transform",
        marks=[pytest.mark.e2e],
    ),
    Case(
        "a label column missing in every row",
        lambda d: run(spec_with(d, column_blank("Oscars"))),
        3,
        ["{dir}/movies.csv: column 'Oscars' (output 'oscar' (binary label)) is empty"],
        stops_before="Transform",
        marks=[pytest.mark.e2e],
    ),
    Case(
        "a text column empty in every row",
        lambda d: run(spec_with(d, column_blank("Title"))),
        3,
        ["{dir}/movies.csv: column 'Title' (input 'title' (text)) is empty"],
        stops_before="Transform",
        marks=[pytest.mark.e2e],
    ),
    Case(
        "numbers in one split's file, a word in the other's",
        two_files_types_differ,
        3,
        ["'Runtime'", "{dir}/data/eval.csv line 2: 'two hours'"],
        stops_before="Transform",
        marks=[pytest.mark.e2e],
    ),
    Case(
        "a curated schema file that is not a schema",
        lambda d: run(spec_with(d, edit=lambda r: r["data"].update(schema=broken_schema(d)))),
        2,
        ["data.schema: {dir}/schema.pbtxt is not a TFMD schema in text format: line 3:9"],
        stops_before="CsvExampleGen",
    ),
    # -- the spec ----------------------------------------------------------------------------
    Case(
        "a tab-indented spec",
        lambda d: run(spec_with(d, raw_text="name: movies\ndata:\n\tpath: movies.csv\n")),
        2,
        ["{dir}/spec.yaml", "never tabs", "line 3, column 1"],
        stops_before="CsvExampleGen",
    ),
    Case(
        "a model name with spaces",
        lambda d: run(spec_with(d, edit=lambda r: _rename(r, name="my movies"))),
        2,
        ["{dir}/spec.yaml", "name", "'my movies'"],
        stops_before="CsvExampleGen",
    ),
    Case(
        "an output named like an input",
        lambda d: run(spec_with(d, edit=lambda r: r["outputs"][0].update(name="year"))),
        2,
        ["{dir}/spec.yaml", "'year'"],
        stops_before="CsvExampleGen",
    ),
    Case(
        "a misspelt option",
        lambda d: run(spec_with(d, edit=lambda r: r["training"].update(epoch=3))),
        2,
        ["{dir}/spec.yaml", "training.epoch", "epochs"],
        stops_before="CsvExampleGen",
    ),
    Case(
        "a spec file that does not exist",
        lambda d: ["run", "--spec", str(d / "nope.yaml")],
        2,
        ["{dir}/nope.yaml"],
    ),
    Case(
        "a spec that is a YAML list",
        lambda d: ["validate", "--spec", str(spec_with(d, raw_text="- name: movies\n"))],
        2,
        ["{dir}/spec.yaml"],
    ),
    # -- the run and the registry ----------------------------------------------------------
    Case(
        "a second run on an output in use",
        lambda d: ["locked", *run(spec_with(d))],
        4,
        ["is in use by another run of this pipeline"],
        stops_before="CsvExampleGen",
    ),
    Case(
        "an --output that is a file",
        lambda d: [*run(spec_with(d)), "--output", str(d / "spec.yaml")],
        2,
        ["cannot write the run's log under {dir}/spec.yaml"],
    ),
    Case(
        "a Beam runner without its endpoint",
        lambda d: [*run(spec_with(d)), "--beam-runner", "portable"],
        2,
        ["--job-endpoint"],
        stops_before="CsvExampleGen",
    ),
    Case(
        "a Beam option value Beam refuses",
        lambda d: [*run(spec_with(d)), "--beam-arg=--direct_running_mode=fastest"],
        2,
        ["Beam refuses", "argument --direct_running_mode: invalid choice: 'fastest'"],
        stops_before="CsvExampleGen",
    ),
    Case(
        "a folder named like a data file (an unexpected error: the message, the log's path)",
        folder_among_data_files,
        1,
        ["error: IsADirectoryError", "{dir}/data/old.csv", "Full log: {dir}/runs/logs/run-"],
        stops_before="StatisticsGen",
    ),
    Case(
        "models list on a registry path that does not exist",
        lambda d: ["models", "list", "--registry", str(d / "registy")],
        2,
        ["no registry at {dir}/registy"],
    ),
    Case(
        "models show of a version that does not exist",
        lambda d: ["models", "show", "movies_fixture", "9"],
        2,
        ["movies_fixture has no version 9", "its versions: 1"],
    ),
    Case(
        "models rollback without a version",
        lambda d: ["models", "rollback", "movies_fixture"],
        2,
        ["rollback needs the version"],
    ),
    Case(
        "models show with two models and no name",
        lambda d: ["models", "show", "--registry", str(two_models(d))],
        2,
        ["holds 2 models (a, b); name one"],
    ),
    Case(
        "compile kubeflow into a folder that does not exist",
        lambda d: [
            "compile",
            "kubeflow",
            "--spec",
            str(spec_with(d)),
            "--output",
            str(d / "new" / "dir" / "pipeline.yaml"),
            "--registry",
            "/mnt/models",
            "--beam-runner",
            "direct",
        ],
        0,
        ["as pipeline 'movies-fixture': {dir}/new/dir/pipeline.yaml"],
    ),
]


def two_models(folder):
    reg = Registry(folder / "two")
    for name in ("a", "b"):
        reg.publish(name, fake_saved_model(folder / f"model_{name}"), {})
    return reg.root


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A registry holding version 1 of the fixture's model, shared by every case."""
    folder = tmp_path_factory.mktemp("registry")
    reg = Registry(folder / "registry")
    card = {"evaluation": card_evaluation(), "baseline": {"version": None}}
    reg.publish("movies_fixture", fake_saved_model(folder / "model"), card)
    return reg


def tree(root):
    return sorted(
        (os.path.relpath(os.path.join(d, f), root), os.stat(os.path.join(d, f)).st_mtime_ns)
        for d, _, files in os.walk(root)
        for f in files
    )


@pytest.fixture
def restore_logging():
    """`mimo run` configures the root logger for its process; put pytest's back after a case."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


ANSWERS = []


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.name.replace(" ", "-"), marks=c.marks) for c in CASES]
)
def test_bad_input_gets_a_short_answer(case, tmp_path, registry, capsys, restore_logging, request):
    argv = case.setup(tmp_path)
    how = argv.pop(0) if argv[0] in ("locked", "portable") else None
    output = tmp_path / "runs"
    if argv[0] == "run":
        if "--output" not in argv:
            argv += ["--output", str(output)]
        argv += ["--registry", registry.root]
        if how == "portable":  # Beam's own Job API server, as for Flink or Spark
            endpoint, _ = request.getfixturevalue("beam_job_server")
            argv += ["--beam-runner", "portable", "--job-endpoint", endpoint]
            argv += ["--environment-type", "LOOPBACK"]
    elif argv[0] == "models" and "--registry" not in argv:
        argv += ["--registry", registry.root]
    before = tree(registry.root)
    start = time.monotonic()
    if how == "locked":
        spec = load_spec(argv[argv.index("--spec") + 1])
        with output_lock(run_paths(spec, str(output))):
            code = main(argv)
    else:
        code = main(argv)
    seconds = time.monotonic() - start
    out, err = capsys.readouterr()
    said = out + err
    answer = " ".join(
        err.strip().splitlines()[-2:] if err.strip() else out.strip().splitlines()[-1:]
    )
    ANSWERS.append((case.name, code, seconds, answer))
    assert code == case.code, said[-3000:]
    assert "Traceback" not in said and 'File "' not in said, said[-3000:]
    for fragment in case.says:
        assert fragment.format(dir=tmp_path) in said, said[-3000:]
    assert tree(registry.root) == before
    if case.stops_before:
        databases = list(output.glob("metadata/*/metadata.db"))
        ran = latest_run_outputs(str(databases[0])) if databases else {}
        assert case.stops_before not in ran, sorted(ran)
    if argv[0] == "run" and code == 3:  # the full story is in the run's log, not on screen
        assert "Full log: " in err
        log = err.split("Full log: ")[1].split()[0]
        assert os.path.isfile(log) and "Traceback" in open(log).read()


def teardown_module():
    """The table for the closing notes (shown with pytest -s)."""
    print("\n| case | exit | seconds | what the user sees (last lines) |\n|---|---|---|---|")
    for name, code, seconds, answer in ANSWERS:
        print(f"| {name} | {code} | {seconds:.1f} | {answer[:300]} |")

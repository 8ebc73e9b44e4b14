"""The dataset spec: one YAML file declares the data, the model's inputs and outputs, and the slices.

`load_spec(path)` reads and validates it. Every mistake found is reported at once, each with the
spec's file name and the offending key (`movies.yaml: inputs[2].modality: ...`), before any TFX
component starts. Defaults per modality and per head type fill in what the user leaves out.

The resolved spec travels through the pipeline as a plain dict (`Spec.to_dict()`, in the
components' custom_config) and is rebuilt with `Spec.from_dict()` inside the executors.
"""

from __future__ import annotations

import codecs
import copy
import dataclasses
import datetime
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from pipeline.constants import DEFAULT_NA_VALUES
from pipeline.cron import is_cron
from preprocessing import HEAD_TYPES, MODALITIES
from preprocessing.heads.base import label_name, label_present_name
from preprocessing.options import (
    BOOLEAN,
    Anything,
    Check,
    Choice,
    ChoiceList,
    Date,
    Integer,
    IntegerList,
    Number,
    Option,
    resolve_options,
)

FORMATS = {"csv": "*.csv", "tfrecord": "*.tfrecord*"}
CSV_KEYS = ("na_values", "na_values_extra", "column_na_values", "encoding")
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
PIPELINE_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


class SpecError(ValueError):
    """The spec is wrong. `problems` is a list of (key, message); str() names the file too."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [
            f"{source}: {key}: {message}" if key else f"{source}: {message}"
            for key, message in problems
        ]
        super().__init__(
            f"{len(problems)} problem(s) in the dataset spec:\n  " + "\n  ".join(lines)
        )


@dataclass(frozen=True)
class InputSpec:
    name: str
    column: str
    modality: str
    options: dict = field(default_factory=dict)

    @property
    def modality_type(self):
        """The `Modality` that owns this input."""
        return MODALITIES[self.modality]

    @property
    def columns(self) -> tuple:
        """The raw columns it reads (its `column`, or several for some modalities)."""
        return self.modality_type.columns(self)


@dataclass(frozen=True)
class Gate:
    """A blessing condition on one metric of one head (used by the Evaluator)."""

    metric: str
    min: float | None = None  # value must be >= min
    max: float | None = None  # value must be <= max
    max_regression: float | None = None  # may be worse than the published model by at most this
    beats: str | None = None  # a rival (`evaluation.baselines`): max_regression is then against it


@dataclass(frozen=True)
class OutputSpec:
    name: str
    column: str
    type: str
    loss: str
    loss_weight: float = 1.0
    metrics: tuple = ()
    class_weights: dict | None = None
    gates: tuple = ()
    hidden_units: int = 32  # a hidden layer of the head's own (0: the head reads the trunk)
    options: dict = field(default_factory=dict)
    missing_label: str = "mask"  # mask | drop | error: what a row without this label means
    min_labelled: int = 10  # the data gate wants at least this many labelled rows per split
    inputs: tuple = ()  # routed: only these inputs' towers, its own fusion and trunk; () shared
    depends_on: tuple = ()  # heads whose outputs this head's layers read
    dependency_gradient: str = "stop"  # stop: this head's loss never trains those heads
    calibration: str = "none"  # temperature: a temperature fitted on validation, in the model

    @property
    def label(self) -> str:
        return label_name(self.name)

    @property
    def label_present(self) -> str:
        return label_present_name(self.name)

    @property
    def head_type(self):
        """The `HeadType` that owns this head."""
        return HEAD_TYPES[self.type]


@dataclass(frozen=True)
class SliceSpec:
    name: str
    column: str
    bucket_width: float | None = None  # numeric columns: slice by floor(x / w) * w


# ExampleGen's splits: the Trainer fits on train and stops early / selects on validation; the
# Evaluator, its gates and every reported quality figure use eval only, which chose nothing.
SPLITS = ("train", "validation", "eval")
DEFAULT_SPLIT = {"train": 8, "validation": 1, "eval": 1}


def future_start(start: str, today: datetime.date | None = None) -> str | None:
    """Why a schedule's start date cannot be used (None: it can)."""
    today = today or datetime.date.today()
    if datetime.date.fromisoformat(start) <= today:
        return None
    return (
        f"{start} is in the future (today is {today.isoformat()}): the scheduler would not run "
        "the pipeline before then; give a past date (with catchup: false only the latest "
        "interval runs)"
    )


def with_validation(buckets: dict) -> dict:
    """Hash buckets with a validation split: given, or carved from train as 1/9 of its buckets
    ({train: 4, eval: 1} -> {train: 32, validation: 4, eval: 9}: eval keeps its share)."""
    if "validation" in buckets:
        return {k: buckets[k] for k in SPLITS}
    t, e = buckets["train"], buckets["eval"]
    return {"train": 8 * t, "validation": t, "eval": 9 * e}


# TFX's span and version placeholders in file patterns: ExampleGen reads the newest span (and
# its newest version) only, and records which one its Examples hold.
SPAN_TOKEN_RE = re.compile(r"\{(SPAN|VERSION)(?::[0-9]+)?\}|\{(YYYY|MM|DD)\}")
DATE_TOKENS = {"YYYY", "MM", "DD"}


def span_glob(pattern: str) -> str:
    """The pattern with its span and version placeholders as globs (every span's files)."""
    return SPAN_TOKEN_RE.sub("*", pattern)


@dataclass(frozen=True)
class DataSpec:
    path: str  # absolute file, glob or directory
    format: str
    root: str  # directory ExampleGen reads (input_base)
    patterns: dict  # split name -> file pattern under root ({'single_split': ...} when hashed)
    hash_buckets: dict | None  # split name -> buckets, when ExampleGen splits by hash
    split_key: str | None = None  # hash on this column instead of the whole example
    schema: str | None = None  # a user-curated schema.pbtxt replaces the inferred schema
    na_values: tuple = DEFAULT_NA_VALUES  # CSV cells meaning "no value" (besides empty ones)
    column_na_values: dict = field(default_factory=dict)  # column -> its own tokens
    encoding: str = "utf-8"  # of the CSV files

    @property
    def spans(self) -> bool:
        """Its patterns hold span (or date) placeholders: each run reads the newest span."""
        return any(SPAN_TOKEN_RE.search(p) for p in self.patterns.values())

    def for_span(self, span: int | None, version: int | None = None) -> DataSpec:
        """The files of one span (and version), as ExampleGen read them: `{SPAN}` and the date
        placeholders filled in (the patterns as they are when there are none)."""
        if not self.spans or span is None:
            return self
        from tfx.components.example_gen import utils
        from tfx.proto import example_gen_pb2

        patterns = {}
        for name, pattern in self.patterns.items():
            kinds = utils.verify_split_pattern_specs(
                example_gen_pb2.Input.Split(name=name, pattern=pattern)
            )
            patterns[name] = utils.get_pattern_for_span_version(pattern, *kinds, span, version)
        return dataclasses.replace(self, patterns=patterns)


@dataclass(frozen=True)
class Cron(Check):
    def error(self, value):
        if is_cron(value, 5):
            return None
        return f"must be a 5-field cron expression or @preset, got {value!r}"

    def json_schema(self):
        return {"type": "string"}

    def describe(self):
        return "cron (5 fields) or @preset"


# The spec's own sections, declared once: defaults, checks and docs (`mimo options`, README).
TRAINING_OPTIONS = {
    "epochs": Option(10, "passes over the training split (at most)", Integer(1)),
    "batch_size": Option(
        64, "examples per replica: the global batch is this times the devices", Integer(1)
    ),
    "learning_rate": Option(0.001, "Adam's learning rate", Number(0, exclusive_minimum=True)),
    "early_stopping_patience": Option(
        3,
        "epochs without a better validation figure before stopping (a head, or the whole model: "
        "see selection)",
        Integer(0),
    ),
    "selection": Option(
        "per_head",
        "per_head: each head keeps the epoch of its best validation metric and stops training "
        "(no gradient into the shared layers) patience epochs after it; joint: one epoch for "
        "every head, by the weighted validation loss",
        Choice(("per_head", "joint")),
    ),
    "loss_balancing": Option(
        "static",
        "how the heads' losses are summed: static (the loss weights), uncertainty (learned "
        "variances, Kendall 2018), dwa (dynamic weight average), famo (Liu 2023)",
        Choice(("static", "uncertainty", "dwa", "famo")),
    ),
    "weight_averaging": Option(
        True,
        "validate, select and serve each epoch's moving average of its weights over about its "
        "last half; training goes on from its own weights",
        BOOLEAN,
    ),
    "mixed_precision": Option(False, "mixed_float16 on GPUs (heads stay float32)", BOOLEAN),
    "seed": Option(
        42,
        "seeds the initial weights, dropout and shuffling: the same data and spec train the same "
        "model (up to the order of parallel floating-point sums)",
        Integer(0, 2**32 - 1),  # numpy's seeds
    ),
    "cache_in_memory": Option(
        "auto",
        "keep the transformed records in memory after the first epoch (auto: splits of at most "
        "256 MB compressed)",
        Choice((True, False, "auto"), "must be true, false or auto"),
    ),
}
MODEL_OPTIONS = {
    "fusion": Option(
        "concatenate",
        "how towers meet: concatenate, gated (a learned per-example weighting), or average (each "
        "tower projected to fusion_units, averaged: several sensors as one)",
        Choice(("concatenate", "gated", "average")),
    ),
    "fusion_units": Option(64, "the gated or average fusion's projection size", Integer(1)),
    "trunk_units": Option([128, 64], "the shared trunk's dense layers", IntegerList(1)),
    "dropout": Option(0.2, "dropout after each trunk layer", Number(0, 0.99)),
    "modality_dropout": Option(
        0.0, "in training, drop a whole input with this probability", Number(0, 1.0)
    ),
}
# What TFX's Tuner may search (trainer/tuning.py): the options of these sections, each value
# checked by the option's own declaration.
# (Not the seed, the cache or the precision: they are not hyperparameters of the model.)
SEARCHABLE = {
    "training": {
        k: o
        for k, o in TRAINING_OPTIONS.items()
        if k not in ("seed", "cache_in_memory", "mixed_precision")
    },
    "model": MODEL_OPTIONS,
}


@dataclass(frozen=True)
class SearchSpace(Check):
    """{"<section>.<option>": [values] or {min, max, log}} over the SEARCHABLE options."""

    def error(self, value):
        if not isinstance(value, dict) or not value:
            return (
                "must map training.<option> or model.<option> to a list of values or to "
                f"{{min, max, log}}, got {value!r}"
            )
        for key, values in value.items():
            section, _, name = str(key).partition(".")
            declared = SEARCHABLE.get(section, {})
            if name not in declared:
                known = ", ".join(f"{s}.{o}" for s, opts in SEARCHABLE.items() for o in opts)
                return f"{key!r} is no searchable option (known: {known})"
            check = declared[name].check
            if isinstance(values, list):
                if not values:
                    return f"{key}: an empty list of values"
                for v in values:
                    if (problem := check.error(v)) is not None:
                        return f"{key}: {v!r} {problem}"
                if len({json.dumps(v) for v in values}) != len(values):
                    return f"{key}: a value is listed twice"
            elif isinstance(values, dict):
                if not isinstance(check, Integer | Number):
                    return f"{key}: a range takes a number option; give a list of values"
                unknown = set(values) - {"min", "max", "log"}
                if unknown or "min" not in values or "max" not in values:
                    return f"{key}: a range is {{min, max}} with an optional log: true"
                low, high = values["min"], values["max"]
                for v in (low, high):
                    if (problem := check.error(v)) is not None:
                        return f"{key}: {problem}"
                if not low < high:
                    return f"{key}: min must be below max, got {low!r} and {high!r}"
                if not isinstance(values.get("log", False), bool):
                    return f"{key}: log must be true or false"
                if values.get("log") and low <= 0:
                    return f"{key}: a log range must start above 0"
            else:
                return f"{key}: must be a list of values or {{min, max, log}}, got {values!r}"
        return None

    def json_schema(self):
        return {
            "type": "object",
            "additionalProperties": {
                "oneOf": [
                    {"type": "array", "minItems": 1},
                    {
                        "type": "object",
                        "properties": {
                            "min": {"type": "number"},
                            "max": {"type": "number"},
                            "log": {"type": "boolean"},
                        },
                        "required": ["min", "max"],
                        "additionalProperties": False,
                    },
                ]
            },
        }

    def describe(self):
        return "{training.<option> or model.<option>: [values] or {min, max, log}}"


TUNING_OPTIONS = {
    "trials": Option(
        0,
        "KerasTuner trials run by TFX's Tuner before the Trainer, each a whole training scored "
        "on the validation split; the Trainer takes the best (0: no Tuner, the spec's values)",
        Integer(0),
    ),
    "algorithm": Option(
        "bayesian",
        "bayesian (KerasTuner's BayesianOptimization, half the trials random first) or random; "
        "the first trial is always the spec's own values",
        Choice(("bayesian", "random")),
    ),
    "space": Option(
        {
            "training.learning_rate": {"min": 0.0003, "max": 0.003, "log": True},
            "model.dropout": [0.1, 0.2, 0.3],
            "model.trunk_units": [[128, 64], [256, 128], [256]],
        },
        "the options searched and their values: a list, or {min, max, log} for a number (the "
        "spec's own value is always in: added to a list, a range widened to it)",
        SearchSpace(),
    ),
}
TUNING_DEFAULTS = {k: o.default for k, o in TUNING_OPTIONS.items()}

# When a scheduler (Airflow, a Kubeflow recurring run) runs the pipeline; the Airflow DAG's
# environment variables override these. The start is a fixed date, never the day the DAG file is
# parsed: a scheduler re-parses the file every 30 s or so, and a start that moves with it moves
# the first run a day later at every parse (it never fires).
DEFAULT_START_DATE = "2025-01-01"
SCHEDULE_OPTIONS = {
    "cron": Option("0 3 * * *", "five-field cron or an Airflow preset such as @daily", Cron()),
    "start_date": Option(
        DEFAULT_START_DATE,
        "the first data interval, a fixed past date (with catchup false only the latest "
        "interval runs, so any past date will do); never the parse day",
        Date(),
    ),
    "catchup": Option(
        False, "run every interval missed since start_date (true) or only the latest", BOOLEAN
    ),
    "retries": Option(
        2, "times a failed step is tried again in the same run (Airflow task retries)", Integer(0)
    ),
    "retry_delay_minutes": Option(5, "wait before each retry", Number(0)),
}
# Keys every head takes besides its type's own options.
HEAD_OPTIONS = {
    "column": Option(None, "the label column (default: the head's name)", Anything("string")),
    "loss": Option(None, "default: the head type's first", Anything("one of the type's losses")),
    "loss_weight": Option(1.0, "the head's weight in the summed loss", Number(0)),
    "metrics": Option(
        None, "metrics to report (default: the head type's)", Anything("list of the type's metrics")
    ),
    "class_weights": Option(
        None, "weighs the loss per class (binary, multiclass)", Anything("{class: weight}")
    ),
    "gates": Option(
        [],
        "blessing conditions, on the overall slice",
        Anything("[{metric, min, max, max_regression, beats}]"),
    ),
    # 32 by default (measured on movies, 3 seeds: oscar AUC 0.894 -> 0.911 in the multi-output
    # model, meter MAE 18.24 -> 18.30, genre already had it; digits' digit 0.943 -> 0.934).
    "hidden_units": Option(
        32, "a hidden layer of the head's own (0: the head reads the trunk)", Integer(0)
    ),
    "missing_label": Option(
        "mask",
        "a row without this label: mask (weighs 0 for this head only, trains the others), "
        "drop (weighs 0 for every head), error (the data gate stops the run)",
        Choice(("mask", "drop", "error")),
    ),
    "min_labelled": Option(
        10, "the data gate stops the run when a split has fewer labelled rows", Integer(1)
    ),
    "inputs": Option(
        [],
        "routing: this head reads only these inputs (by name), through a fusion and trunk of its "
        "own; [] the shared trunk of every input",
        Anything("list of input names"),
    ),
    "depends_on": Option(
        [],
        "heads whose outputs (probabilities or values) this head's layers also read",
        Anything("list of head names"),
    ),
    "dependency_gradient": Option(
        "stop",
        "stop: this head's loss never trains the heads it reads (depends_on); flow: it trains "
        "them too",
        Choice(("stop", "flow")),
    ),
    "calibration": Option(
        "none",
        "temperature: after training, one temperature fitted on the validation split scales the "
        "head's logits, inside the exported model (binary, multiclass, multilabel)",
        Choice(("none", "temperature")),
    ),
}
TRAINING_DEFAULTS = {k: o.default for k, o in TRAINING_OPTIONS.items()}
MODEL_DEFAULTS = {k: o.default for k, o in MODEL_OPTIONS.items()}
SCHEDULE_DEFAULTS = {k: o.default for k, o in SCHEDULE_OPTIONS.items()}
# Rivals trained on the same Transform output and evaluated beside the network (trainer/gbdt.py).
BASELINE_KINDS = ("gbdt",)
EVALUATION_OPTIONS = {
    "baselines": Option(
        ["gbdt"],
        "rival models trained on the same transformed data, evaluated beside the network per "
        "head and slice (gbdt: gradient-boosted trees per head); [] for none",
        ChoiceList(BASELINE_KINDS),
    ),
}
EVALUATION_DEFAULTS = {k: o.default for k, o in EVALUATION_OPTIONS.items()}

# Distances between two distributions of a column, as TFDV's comparators measure them
# (pipeline/monitoring/drift.py): Jensen-Shannon divergence (numbers and categories) and the
# L-infinity norm of the value frequencies (categories).
DISTANCES = ("jensen_shannon", "infinity_norm")


@dataclass(frozen=True)
class Thresholds(Check):
    """{distance: threshold}: a distance above its threshold is drift (or skew)."""

    def error(self, value):
        if not isinstance(value, dict) or not value:
            return f"must map {' and/or '.join(DISTANCES)} to a threshold, got {value!r}"
        for k, v in value.items():
            if k not in DISTANCES:
                return f"{k!r} is no distance (known: {', '.join(DISTANCES)})"
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= 1:
                return f"{k}: must be a threshold in (0, 1], got {v!r}"
        return None

    def json_schema(self):
        number = {"type": "number", "exclusiveMinimum": 0, "maximum": 1}
        return {
            "type": "object",
            "properties": {d: number for d in DISTANCES},
            "additionalProperties": False,
        }

    def describe(self):
        return "{jensen_shannon: t, infinity_norm: t}, t in (0, 1]"


@dataclass(frozen=True)
class ThresholdsByName(Check):
    """{name: thresholds} (the names are checked against the spec's inputs or heads)."""

    what: str

    def error(self, value):
        if not isinstance(value, dict):
            return f"must map {self.what} names to thresholds, got {value!r}"
        for name, thresholds in value.items():
            if (problem := Thresholds().error(thresholds)) is not None:
                return f"{name}: {problem}"
        return None

    def json_schema(self):
        return {"type": "object", "additionalProperties": Thresholds().json_schema()}

    def describe(self):
        return f"{{{self.what} name: thresholds}}"


MONITORING_OPTIONS = {
    "drift": Option(
        {"jensen_shannon": 0.1},
        "every compared input's thresholds: its training data against the published model's "
        "(drift, in the data gate) and served requests against training (skew, mimo monitor)",
        Thresholds(),
    ),
    "inputs": Option({}, "an input's own thresholds instead of drift's", ThresholdsByName("input")),
    "heads": Option(
        {"jensen_shannon": 0.1},
        "every head's prediction-drift thresholds (mimo monitor: served predictions against the "
        "eval split's)",
        Thresholds(),
    ),
    "on_drift": Option(
        "warn",
        "stop: an input over its threshold stops the run before Transform (nothing is trained "
        "or pushed); warn: reported, the run goes on",
        Choice(("warn", "stop")),
    ),
}
MONITORING_DEFAULTS = {k: o.default for k, o in MONITORING_OPTIONS.items()}


@dataclass(frozen=True)
class Spec:
    name: str
    data: DataSpec
    inputs: tuple
    outputs: tuple
    slices: tuple = ()
    training: dict = field(default_factory=lambda: dict(TRAINING_DEFAULTS))
    model: dict = field(default_factory=lambda: dict(MODEL_DEFAULTS))
    schedule: dict = field(default_factory=lambda: dict(SCHEDULE_DEFAULTS))
    evaluation: dict = field(default_factory=lambda: dict(EVALUATION_DEFAULTS))
    monitoring: dict = field(default_factory=lambda: copy.deepcopy(MONITORING_DEFAULTS))
    tuning: dict = field(default_factory=lambda: copy.deepcopy(TUNING_DEFAULTS))
    source: str = "<dict>"

    def to_dict(self) -> dict:
        """The resolved spec in the YAML's own shape: `from_dict(to_dict())` gives it back."""
        single = self.data.patterns.get("single_split")
        data = {
            "path": os.path.join(self.data.root, single) if single else self.data.root,
            "format": self.data.format,
            "split": dict(self.data.hash_buckets or self.data.patterns),
        }
        if self.data.split_key:
            data["split_key"] = self.data.split_key
        if self.data.schema:
            data["schema"] = self.data.schema
        if self.data.format == "csv":
            data["na_values"] = list(self.data.na_values)
            data["encoding"] = self.data.encoding
            if self.data.column_na_values:
                data["column_na_values"] = {
                    k: list(v) for k, v in self.data.column_na_values.items()
                }
        outputs = []
        for o in self.outputs:
            out = {
                "name": o.name,
                "column": o.column,
                "type": o.type,
                "loss": o.loss,
                "loss_weight": o.loss_weight,
                "metrics": list(o.metrics),
                "hidden_units": o.hidden_units,
                "missing_label": o.missing_label,
                "min_labelled": o.min_labelled,
                **({"inputs": list(o.inputs)} if o.inputs else {}),
                **({"depends_on": list(o.depends_on)} if o.depends_on else {}),
                **(
                    {"dependency_gradient": o.dependency_gradient}
                    if o.dependency_gradient != "stop"
                    else {}
                ),
                **({"calibration": o.calibration} if o.calibration != "none" else {}),
                "gates": [
                    {k: v for k, v in dataclasses.asdict(g).items() if v is not None}
                    for g in o.gates
                ],
                **o.options,
            }
            if o.class_weights:
                out["class_weights"] = dict(o.class_weights)
            outputs.append(out)
        return {
            "name": self.name,
            "data": data,
            "inputs": [
                {"name": i.name, "column": i.column, "modality": i.modality, **i.options}
                for i in self.inputs
            ],
            "outputs": outputs,
            "slices": [
                {k: v for k, v in dataclasses.asdict(sl).items() if v is not None}
                for sl in self.slices
            ],
            "training": dict(self.training),
            "model": dict(self.model),
            "schedule": dict(self.schedule),
            "evaluation": {k: list(v) for k, v in self.evaluation.items()},
            "monitoring": copy.deepcopy(self.monitoring),
            "tuning": copy.deepcopy(self.tuning),
            "source": self.source,
        }

    @classmethod
    def from_dict(
        cls, raw: dict, source: str = "<dict>", base_dir: str = ".", check_files: bool = False
    ) -> Spec:
        return _Parser(source, base_dir, check_files).parse(raw)

    def fingerprint(self) -> str:
        d = self.to_dict()
        d.pop("source")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def input_columns(self) -> set:
        return {c for i in self.inputs for c in i.columns}


def _schema_problem(path: str) -> str | None:
    """Why a curated schema.pbtxt cannot be read (None: it parses)."""
    import tensorflow as tf
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    try:
        with tf.io.gfile.GFile(path) as f:
            text_format.Parse(f.read(), schema_pb2.Schema())
    except (text_format.ParseError, UnicodeDecodeError) as e:
        return f"line {e}" if isinstance(e, text_format.ParseError) else str(e)
    return None


def load_spec(path: str) -> Spec:
    """Reads, resolves and validates a spec file, including that its data files exist."""
    if not os.path.isfile(path):
        raise SpecError(path, [("", "spec file not found")])
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except yaml.YAMLError as e:
        hint = " (YAML indents with spaces, never tabs)" if "'\\t'" in str(e) else ""
        raise SpecError(path, [("", f"not valid YAML{hint}: {e}")]) from None
    return Spec.from_dict(
        raw, source=path, base_dir=os.path.dirname(os.path.abspath(path)), check_files=True
    )


def _has_glob(path: str) -> bool:
    return any(ch in os.path.basename(path) for ch in "*?[")


def _isdir(path: str) -> bool:
    import tensorflow as tf

    return tf.io.gfile.isdir(path)


class _Parser:
    def __init__(self, source: str, base_dir: str, check_files: bool):
        self.source = source
        self.base_dir = base_dir
        self.check_files = check_files
        self.problems: list[tuple[str, str]] = []

    def error(self, key: str, message: str) -> None:
        self.problems.append((key, message))

    def parse(self, raw: Any) -> Spec:
        if not isinstance(raw, dict):
            raise SpecError(self.source, [("", "must be a mapping with data, inputs, outputs")])
        raw = copy.deepcopy(raw)
        known = {
            "name",
            "data",
            "inputs",
            "outputs",
            "slices",
            "training",
            "model",
            "schedule",
            "evaluation",
            "monitoring",
            "tuning",
            "source",
        }
        for key in raw:
            if key not in known:
                self.error(key, f"unknown section (known: {', '.join(sorted(known - {'source'}))})")
        name = raw.get("name")
        if not isinstance(name, str) or not PIPELINE_NAME_RE.match(name):
            self.error(
                "name",
                "must be a name of letters, digits, '_' or '-' "
                f"starting with a letter, got {name!r}",
            )
        data = self._data(raw.get("data"))
        inputs = self._inputs(raw.get("inputs"))
        outputs = self._outputs(raw.get("outputs"))
        slices = self._slices(raw.get("slices") or [])
        training = self._section("training", raw.get("training"), TRAINING_OPTIONS)
        model = self._section("model", raw.get("model"), MODEL_OPTIONS)
        schedule = self._schedule(raw.get("schedule"))
        evaluation = self._section("evaluation", raw.get("evaluation"), EVALUATION_OPTIONS)
        monitoring = self._section("monitoring", raw.get("monitoring"), MONITORING_OPTIONS)
        tuning = self._section("tuning", raw.get("tuning"), TUNING_OPTIONS)
        self._cross_checks(inputs, outputs, slices, data)
        self._monitored(inputs, monitoring)
        self._rival_gates(outputs, evaluation["baselines"])
        if self.problems:
            raise SpecError(self.source, self.problems)
        return Spec(
            name=name,
            data=data,
            inputs=tuple(inputs),
            outputs=tuple(outputs),
            slices=tuple(slices),
            training=training,
            model=model,
            schedule=schedule,
            evaluation=evaluation,
            monitoring=monitoring,
            tuning=tuning,
            source=raw.get("source", self.source),
        )

    def _schedule(self, raw) -> dict:
        out = self._section("schedule", raw, SCHEDULE_OPTIONS)
        start = out["start_date"]
        if Date().error(start) is None:  # else the section's check said why
            out["start_date"] = (
                start.isoformat()[:10]
                if isinstance(start, datetime.date)
                else datetime.date.fromisoformat(str(start)).isoformat()
            )
            problem = future_start(out["start_date"])
            if problem:
                self.error("schedule.start_date", problem)
        return out

    # -- data ------------------------------------------------------------------------------------
    def _resolve(self, path: str) -> str:
        if "://" in path or os.path.isabs(path):
            return path
        return os.path.normpath(os.path.join(self.base_dir, path))

    def _data(self, raw) -> DataSpec | None:
        if not isinstance(raw, dict):
            self.error("data", "missing: give at least data.path")
            return None
        known = ("path", "format", "split", "split_key", "schema", *CSV_KEYS)
        for key in raw:
            if key not in known:
                self.error(f"data.{key}", f"unknown key (known: {', '.join(known)})")
        fmt = raw.get("format", "csv")
        if fmt not in FORMATS:
            self.error("data.format", f"must be one of {sorted(FORMATS)}, got {fmt!r}")
            fmt = "csv"
        path = raw.get("path")
        if not isinstance(path, str) or not path:
            self.error("data.path", "missing: the data file, glob or directory")
            return None
        path = self._resolve(path)
        split = raw.get("split", dict(DEFAULT_SPLIT))
        hash_buckets, patterns = None, {}
        if not isinstance(split, dict) or not {"train", "eval"} <= set(split) <= set(SPLITS):
            self.error(
                "data.split",
                "must map 'train', 'validation' and 'eval' to hash-bucket counts (e.g. "
                "{train: 8, validation: 1, eval: 1}; without 'validation' it is carved from "
                "train) or to file patterns",
            )
            split = dict(DEFAULT_SPLIT)
        if all(isinstance(v, int) and not isinstance(v, bool) for v in split.values()):
            for k, v in split.items():
                if v <= 0:
                    self.error(f"data.split.{k}", f"must be a positive bucket count, got {v}")
            hash_buckets = with_validation(split)
            if SPAN_TOKEN_RE.search(path):  # read under the folder above the first placeholder
                parts = path.split("/")
                first = next(n for n, p in enumerate(parts) if SPAN_TOKEN_RE.search(p))
                root, pattern = "/".join(parts[:first]), "/".join(parts[first:])
            elif self.check_files and not _has_glob(path) and _isdir(path):
                root, pattern = path, FORMATS[fmt]
            else:
                root, pattern = os.path.dirname(path), os.path.basename(path)
            patterns = {"single_split": pattern}
        elif all(isinstance(v, str) and v for v in split.values()):
            root, patterns = path, {k: split[k] for k in SPLITS if k in split}
            if "validation" not in split:
                self.error(
                    "data.split.validation",
                    "missing: with file patterns, give the validation files too (early stopping "
                    "and model selection use them; the Evaluator and its gates use only 'eval')",
                )
        else:
            self.error("data.split", "give every split as bucket counts or every one as a pattern")
            root, patterns = path, {}
        if SPAN_TOKEN_RE.search(root):
            self.error("data.path", "span and version placeholders go in the file patterns only")
        self._span_patterns(patterns)
        if self.check_files:
            import tensorflow as tf

            for split_name, pattern in patterns.items():
                where = "data.path" if split_name == "single_split" else f"data.split.{split_name}"
                full = os.path.join(root, pattern)
                if not tf.io.gfile.glob(span_glob(full)):
                    self.error(where, f"no data file matches {full}")
        split_key = raw.get("split_key")
        if split_key is not None and (not isinstance(split_key, str) or hash_buckets is None):
            self.error("data.split_key", "must be a column name, and only with hash buckets")
        schema = raw.get("schema")
        if schema is not None:
            schema = self._resolve(str(schema))
            if self.check_files and not os.path.isfile(schema) and "://" not in schema:
                self.error("data.schema", f"schema file not found: {schema}")
            elif self.check_files and (problem := _schema_problem(schema)):
                self.error(
                    "data.schema", f"{schema} is not a TFMD schema in text format: {problem}"
                )
        return DataSpec(
            path=path,
            format=fmt,
            root=root,
            patterns=patterns,
            hash_buckets=hash_buckets,
            split_key=split_key,
            schema=schema,
            **self._csv_options(raw, fmt),
        )

    def _span_patterns(self, patterns: dict) -> None:
        """TFX's rules: {SPAN} or a whole date ({YYYY}{MM}{DD}), each at most once; {VERSION}
        only with one of them; every split's pattern the same placeholders."""
        found = {}
        for split_name, pattern in patterns.items():
            where = "data.path" if split_name == "single_split" else f"data.split.{split_name}"
            tokens = [a or b for a, b in SPAN_TOKEN_RE.findall(pattern)]
            found[split_name] = set(tokens)
            if not tokens:
                continue
            present = set(tokens)
            if len(tokens) != len(present):
                self.error(where, f"{pattern}: a placeholder appears twice")
            if "SPAN" in present and present & DATE_TOKENS:
                self.error(where, f"{pattern}: {{SPAN}} or a date ({{YYYY}}{{MM}}{{DD}}), not both")
            elif present & DATE_TOKENS and not DATE_TOKENS <= present:
                self.error(where, f"{pattern}: a date needs all of {{YYYY}}, {{MM}} and {{DD}}")
            elif present == {"VERSION"}:
                self.error(where, f"{pattern}: {{VERSION}} needs {{SPAN}} or a date")
        if len({frozenset(t) for t in found.values()}) > 1:
            self.error(
                "data.split",
                "every split's pattern needs the same span and version placeholders, got "
                + ", ".join(f"{k}: {sorted(v) or 'none'}" for k, v in found.items()),
            )

    def _csv_options(self, raw: dict, fmt: str) -> dict:
        """data.na_values (replaces the default tokens), data.na_values_extra (adds to them),
        data.column_na_values ({column: tokens} instead of them, for that column), and
        data.encoding (of the files; default utf-8)."""
        if fmt != "csv":
            for key in CSV_KEYS:
                if key in raw:
                    self.error(f"data.{key}", "applies to CSV data only")
            return {}
        encoding = raw.get("encoding", "utf-8")
        try:
            encoding = codecs.lookup(encoding).name if isinstance(encoding, str) else None
        except LookupError:
            encoding = None
        if encoding is None:
            self.error("data.encoding", f"not an encoding Python knows: {raw['encoding']!r}")
            encoding = "utf-8"

        def tokens(key, value):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                self.error(key, f"must be a list of strings (quote YAML's null/NA), got {value!r}")
                return ()
            return tuple(dict.fromkeys(value))

        na_values = tokens("data.na_values", raw.get("na_values", list(DEFAULT_NA_VALUES)))
        na_values += tuple(
            v
            for v in tokens("data.na_values_extra", raw.get("na_values_extra", []))
            if v not in na_values
        )
        columns = raw.get("column_na_values", {})
        if not isinstance(columns, dict):
            self.error("data.column_na_values", "must map column names to lists of strings")
            columns = {}
        return {
            "na_values": na_values,
            "column_na_values": {
                str(c): tokens(f"data.column_na_values.{c}", v) for c, v in columns.items()
            },
            "encoding": encoding,
        }

    # -- inputs ----------------------------------------------------------------------------------
    def _named_list(self, section: str, raw, allow_empty=False) -> list[tuple[str, dict]]:
        if allow_empty and raw == []:
            return []
        if not isinstance(raw, list) or not raw:
            self.error(section, "must be a non-empty list")
            return []
        items = []
        for i, item in enumerate(raw):
            key = f"{section}[{i}]"
            if not isinstance(item, dict):
                self.error(key, "must be a mapping with at least a name")
                continue
            name = item.get("name")
            if not isinstance(name, str) or not NAME_RE.match(name):
                self.error(
                    f"{key}.name",
                    "must be an identifier (letters, digits, '_', "
                    f"starting with a letter), got {name!r}",
                )
                continue
            column = item.get("column", name)
            if not isinstance(column, str) or not column:
                self.error(f"{key}.column", f"must be a column name, got {column!r}")
                continue
            items.append((key, item))
        return items

    def _inputs(self, raw) -> list[InputSpec]:
        inputs = []
        for key, item in self._named_list("inputs", raw):
            modality_name = item.get("modality")
            modality = MODALITIES.get(modality_name)
            if modality is None:
                self.error(
                    f"{key}.modality",
                    f"unknown modality {modality_name!r} "
                    f"(known: {', '.join(sorted(MODALITIES))})",
                )
                continue
            options = {k: v for k, v in item.items() if k not in {"name", "column", "modality"}}
            options, errors = modality.resolve(options)
            for e in errors:
                self.error(f"{key}.{e.key}", str(e))
            inputs.append(
                InputSpec(item["name"], item.get("column", item["name"]), modality_name, options)
            )
        return inputs

    # -- outputs ---------------------------------------------------------------------------------
    def _outputs(self, raw) -> list[OutputSpec]:
        outputs = []
        for key, item in self._named_list("outputs", raw):
            type_name = item.get("type")
            head_type = HEAD_TYPES.get(type_name)
            if head_type is None:
                self.error(
                    f"{key}.type",
                    f"unknown head type {type_name!r} (known: {', '.join(sorted(HEAD_TYPES))})",
                )
                continue
            common = {k: v for k, v in item.items() if k in HEAD_OPTIONS}
            own = {
                k: v for k, v in item.items() if k not in HEAD_OPTIONS and k not in ("name", "type")
            }
            options, errors = head_type.resolve(own)
            for e in errors:
                self.error(f"{key}.{e.key}", str(e))
            loss = common.get("loss", head_type.default_loss)
            if loss not in head_type.losses:
                self.error(
                    f"{key}.loss",
                    f"{loss!r} is not a loss for a {type_name} head "
                    f"(choose one of: {', '.join(head_type.losses)})",
                )
            weight = common.get("loss_weight", 1.0)
            message = HEAD_OPTIONS["loss_weight"].check.error(weight)
            if message:
                self.error(f"{key}.loss_weight", message)
                weight = 1.0
            defaults = list(head_type.default_metrics(options))
            metrics = common.get("metrics", defaults)
            known = list(head_type.metric_table)
            if not isinstance(metrics, list) or any(m not in known for m in metrics):
                self.error(
                    f"{key}.metrics",
                    f"must be a list drawn from {', '.join(known)}, got {metrics!r}",
                )
                metrics = defaults
            elif not errors:
                for m in metrics:
                    problem = head_type.metric_problem(m, options)
                    if problem:
                        self.error(f"{key}.metrics", problem)
            class_weights = self._class_weights(f"{key}.class_weights", common.get("class_weights"))
            if class_weights and not head_type.accepts_class_weights:
                takers = sorted(n for n, t in HEAD_TYPES.items() if t.accepts_class_weights)
                self.error(
                    f"{key}.class_weights",
                    f"a {type_name} head takes no class weights ({' and '.join(takers)} heads do)",
                )
            hidden = common.get("hidden_units", HEAD_OPTIONS["hidden_units"].default)
            message = HEAD_OPTIONS["hidden_units"].check.error(hidden)
            if message:
                self.error(f"{key}.hidden_units", message)
                hidden = 0
            plain_keys = ("missing_label", "min_labelled", "calibration", "dependency_gradient")
            plain, plain_errors = resolve_options(
                {k: HEAD_OPTIONS[k] for k in plain_keys},
                {k: common[k] for k in plain_keys if k in common},
            )
            if plain["calibration"] != "none" and not head_type.activation:
                self.error(
                    f"{key}.calibration",
                    f"a {type_name} head has no probabilities to calibrate "
                    "(binary, multiclass and multilabel heads do)",
                )
            for e in plain_errors:
                self.error(f"{key}.{e.key}", str(e))
            routed = common.get("inputs") or []
            if not isinstance(routed, list) or not all(isinstance(n, str) for n in routed):
                self.error(f"{key}.inputs", f"must be a list of input names, got {routed!r}")
                routed = []
            elif len(set(routed)) != len(routed):
                self.error(f"{key}.inputs", f"names an input twice: {routed}")
            depends = common.get("depends_on") or []
            if not isinstance(depends, list) or not all(isinstance(n, str) for n in depends):
                self.error(f"{key}.depends_on", f"must be a list of head names, got {depends!r}")
                depends = []
            gates = self._gates(f"{key}.gates", common.get("gates") or [])
            for n, g in enumerate(gates):
                if g.metric not in metrics:
                    self.error(
                        f"{key}.gates[{n}].metric",
                        f"{g.metric!r} is not among this head's metrics {metrics}",
                    )
            outputs.append(
                OutputSpec(
                    name=item["name"],
                    column=item.get("column", item["name"]),
                    type=type_name,
                    loss=loss,
                    loss_weight=float(weight),
                    metrics=tuple(metrics),
                    class_weights=class_weights,
                    gates=tuple(gates),
                    hidden_units=hidden,
                    options=options,
                    missing_label=plain["missing_label"],
                    min_labelled=plain["min_labelled"],
                    inputs=tuple(routed),
                    depends_on=tuple(dict.fromkeys(depends)),
                    dependency_gradient=plain["dependency_gradient"],
                    calibration=plain["calibration"],
                )
            )
        return outputs

    def _class_weights(self, key, raw):
        if raw is None:
            return None
        if not isinstance(raw, dict) or not raw:
            self.error(key, "must map class (e.g. 0 and 1 for binary) to a weight")
            return None
        weights = {}
        for cls, w in raw.items():
            if isinstance(w, bool) or not isinstance(w, int | float) or w < 0:
                self.error(f"{key}.{cls}", f"must be a number >= 0, got {w!r}")
            else:
                weights[str(cls)] = float(w)
        return weights

    def _gates(self, key, raw) -> list[Gate]:
        if not isinstance(raw, list):
            self.error(key, "must be a list of {metric, min|max|max_regression|beats}")
            return []
        gates = []
        for i, g in enumerate(raw):
            k = f"{key}[{i}]"
            if not isinstance(g, dict) or not isinstance(g.get("metric"), str):
                self.error(k, "must be a mapping with a `metric`")
                continue
            bounds = {b: g.get(b) for b in ("min", "max", "max_regression")}
            unknown = set(g) - {"metric", "beats", *bounds}
            if unknown:
                self.error(
                    k,
                    f"unknown key(s) {sorted(unknown)} (known: metric, min, max, "
                    "max_regression, beats)",
                )
            beats = g.get("beats")
            if beats is not None:
                if beats not in BASELINE_KINDS:
                    self.error(
                        f"{k}.beats", f"must be one of {list(BASELINE_KINDS)}, got {beats!r}"
                    )
                if bounds["min"] is not None or bounds["max"] is not None:
                    self.error(
                        k,
                        f"a gate that beats {beats} compares with it only (max_regression: how "
                        "much worse it may be, default 0); put min/max in a gate of their own",
                    )
            elif all(v is None for v in bounds.values()):
                self.error(k, "needs at least one of min, max, max_regression, beats")
            for b, v in bounds.items():
                if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                    self.error(f"{k}.{b}", f"must be a number, got {v!r}")
                    bounds[b] = None
            if bounds["max_regression"] is not None and bounds["max_regression"] < 0:
                self.error(f"{k}.max_regression", "must be >= 0")
            if beats is not None and bounds["max_regression"] is None:
                bounds["max_regression"] = 0.0
            gates.append(Gate(g["metric"], **bounds, beats=beats))
        return gates

    def _monitored(self, inputs, monitoring) -> None:
        """monitoring.inputs names inputs whose columns are compared; the L-infinity norm is
        of categories only."""
        by_name = {i.name: i for i in inputs}
        compared = sorted(n for n, i in by_name.items() if i.modality_type.drift)
        given = [("monitoring.drift", None, monitoring["drift"])] + [
            (f"monitoring.inputs.{name}", name, t) for name, t in monitoring["inputs"].items()
        ]
        for key, name, thresholds in given:
            if name is not None and name not in by_name:
                self.error(key, f"{name!r} is no input (inputs: {', '.join(by_name)})")
                continue
            item = by_name.get(name)
            if item is not None and not item.modality_type.drift:
                self.error(
                    key,
                    f"a {item.modality} input is not compared (drift compares the inputs "
                    f"{', '.join(compared) or 'of no modality here'}: numbers and categories)",
                )
            elif item is not None and "infinity_norm" in thresholds:
                if item.modality_type.drift != "categories":
                    self.error(
                        f"{key}.infinity_norm",
                        "the L-infinity norm compares categories' frequencies; a number's "
                        "histogram takes jensen_shannon",
                    )

    def _rival_gates(self, outputs, baselines) -> None:
        """A gate may beat only a rival the run trains."""
        for n, head in enumerate(outputs):
            for i, gate in enumerate(head.gates):
                if gate.beats and gate.beats in BASELINE_KINDS and gate.beats not in baselines:
                    self.error(
                        f"outputs[{n}].gates[{i}].beats",
                        f"{gate.beats} is not trained: add it to evaluation.baselines "
                        f"(now {list(baselines)})",
                    )

    # -- slices, training, model -----------------------------------------------------------------
    def _slices(self, raw) -> list[SliceSpec]:
        if not isinstance(raw, list):
            self.error("slices", "must be a list")
            return []
        slices = []
        for key, item in self._named_list("slices", raw, allow_empty=True):
            width = item.get("bucket_width")
            if width is not None and (
                isinstance(width, bool) or not isinstance(width, int | float) or width <= 0
            ):
                self.error(f"{key}.bucket_width", f"must be a number > 0, got {width!r}")
                width = None
            for k in set(item) - {"name", "column", "bucket_width"}:
                self.error(f"{key}.{k}", "unknown key (known: name, column, bucket_width)")
            slices.append(SliceSpec(item["name"], item.get("column", item["name"]), width))
        return slices

    def _section(self, section, raw, declared) -> dict:
        raw = raw or {}
        if not isinstance(raw, dict):
            self.error(section, "must be a mapping")
            raw = {}
        out, errors = resolve_options(declared, raw, "unknown key")
        for e in errors:
            self.error(f"{section}.{e.key}", str(e))
        return out

    # -- across sections -------------------------------------------------------------------------
    def _dependencies(self, outputs) -> None:
        """depends_on names other heads, and no head depends on itself through others."""
        names = {o.name: n for n, o in enumerate(outputs)}
        for n, o in enumerate(outputs):
            for d in o.depends_on:
                if d not in names or d == o.name:
                    self.error(
                        f"outputs[{n}].depends_on",
                        f"{d!r} is no other head (heads: {', '.join(names)})",
                    )
        edges = {o.name: [d for d in o.depends_on if d in names and d != o.name] for o in outputs}
        state: dict[str, int] = {}  # 1: on the current path, 2: done

        def visit(name, path):
            state[name] = 1
            for d in edges[name]:
                if state.get(d) == 1:
                    cycle = path[path.index(d) :] + [d]
                    self.error(
                        f"outputs[{names[name]}].depends_on",
                        f"a dependency cycle: {' -> '.join(cycle)}",
                    )
                elif d not in state:
                    visit(d, path + [d])
            state[name] = 2

        for o in outputs:
            if o.name not in state:
                visit(o.name, [o.name])

    def _cross_checks(self, inputs, outputs, slices, data) -> None:
        def dupes(items, attr, section):
            seen = {}
            for i, item in enumerate(items):
                value = getattr(item, attr)
                if value in seen:
                    self.error(
                        f"{section}[{i}].{attr}",
                        f"{value!r} is listed twice " f"(also {section}[{seen[value]}])",
                    )
                seen.setdefault(value, i)

        dupes(inputs, "name", "inputs")
        dupes(inputs, "column", "inputs")
        dupes(outputs, "name", "outputs")
        dupes(slices, "name", "slices")
        input_names = [i.name for i in inputs]
        for n, o in enumerate(outputs):
            for name in o.inputs:
                if name not in input_names:
                    self.error(
                        f"outputs[{n}].inputs",
                        f"{name!r} is no input (inputs: {', '.join(input_names)})",
                    )
        if outputs and all(o.inputs for o in outputs):
            read = {name for o in outputs for name in o.inputs}
            for n, i in enumerate(inputs):
                if i.name not in read:
                    self.error(
                        f"inputs[{n}]",
                        f"{i.name!r} is read by no head (every head lists its inputs)",
                    )
        self._dependencies(outputs)
        input_columns = {c: n for n, i in enumerate(inputs) for c in i.columns}
        for n, o in enumerate(outputs):
            if o.column in input_columns:
                self.error(
                    f"outputs[{n}].column",
                    f"label column {o.column!r} is also an input "
                    f"(inputs[{input_columns[o.column]}]): the model would see its label",
                )
        # Transformed features, Keras inputs and outputs share one namespace: every name the
        # pipeline generates from a spec name must be unique across inputs, heads and slices.
        from preprocessing.transform import slice_name

        owners: dict[str, str] = {}

        def claim(name: str, owner: str, key: str) -> None:
            if name in owners and owners[name] != owner:
                self.error(
                    key,
                    f"{owner} makes the name {name!r}, which {owners[name]} makes too (inputs' "
                    "features, head names, <head>_label, <head>_label_present and "
                    "slice_<name> share one namespace); rename one",
                )
            owners.setdefault(name, owner)

        for n, i in enumerate(inputs):
            for feature in MODALITIES[i.modality].output_names(i):
                claim(feature, f"input '{i.name}'", f"inputs[{n}].name")
        for n, o in enumerate(outputs):
            for name in (o.name, o.label, o.label_present):
                claim(name, f"output '{o.name}'", f"outputs[{n}].name")
        for n, s in enumerate(slices):
            claim(slice_name(s.name), f"slice '{s.name}'", f"slices[{n}].name")
        if data and data.split_key and data.split_key in {o.column for o in outputs}:
            self.error("data.split_key", "must not be a label column")

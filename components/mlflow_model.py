"""The model as MLflow registers it: a pyfunc over the exported SavedModel, servable by
`mlflow models serve -m "models:/<name>@champion" --env-manager local`.

The one owner of the MLflow model flavour (the pusher logs through `log_pyfunc_model`, the
baseline step finds the SavedModel back through `saved_model_path`). The logged model is

    model/MLmodel                         the pyfunc flavour, the signature, the input example
    model/python_model.pkl                a `MimoModel`: input names and columns, missing tokens
    model/artifacts/<folder>/             the SavedModel as exported (trainer/export.py)

`MimoModel.predict` takes a pandas DataFrame of raw columns as the user's CSV has them (the spec's
`column` names: spaces, parentheses, dots, slashes are fine; extra columns such as an ID or the
labels are ignored) and calls the SavedModel's `serving_raw` signature, which takes each input by
its spec `name`. Missing values go in the way that signature and the modalities expect (None,
NaN, an empty cell or one of the spec's `data.na_values` tokens, as the CSV reader reads them):
an empty string for a text, list, categorical or image input (no tokens, the OOV/missing id, an
all-zero image) and NaN for a number, which the model imputes (numeric modality) - when it can:
a number column that was never missing in training is exported without a missing value (its
NaN would reach the network), so the model refuses one there (found by probing the SavedModel
at load). It returns one row per request row with every output `serving_raw` has: per head its
prediction under the head's name (a number for regression, the positive-class probability for
binary, the list of class probabilities for multiclass and multilabel, in the spec's `classes`
order or the label vocabulary's), plus `<head>_class` (multiclass: the most probable class) and
`<head>_labels` (multilabel: one string per class, the class name where its probability is over
0.5, else "").

A signal input reads its column as the data holds it: a CSV cell of delimited steps (a string),
or, for TFRecord data, a list of floats (steps x channels, step-major, as in the TFRecord; an
MLflow `Array(double)` column); a signal read from several columns (`columns`) takes each of
them. A missing signal is None, NaN or an empty list or cell.

A request the model cannot answer - no rows, a missing column, a value of the wrong type (a word
in a number column), a missing value the model cannot take - raises an MlflowException with
error code INVALID_PARAMETER_VALUE naming the column, which `mlflow models serve` answers with
HTTP 400. (The signature marks every input column optional only so that a missing column reaches
that check: MLflow's own check for it answers 500.)

Light at import: no TFX, no TensorFlow (imported in `load_context`), no project module, so the
serving process imports it fast. The pickled model refers to this module by name: serving needs
the project installed, as it is in the environment that pushed (`--env-manager local`); that is
why no `code_paths` are logged (they would put this file on the path under another module name).
"""

from __future__ import annotations

import importlib.metadata
import os

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

ARTIFACT_PATH = "model"  # the model's folder in its run
SAVED_MODEL = "saved_model"  # the SavedModel's key in the pyfunc's artifacts
SIGNATURE = "serving_raw"  # trainer/export.py: raw values by input name
EXAMPLE_ROWS = 3  # the input example's rows, from the eval split
# MLflow column types of the spec's modalities (csv_type: numbers are read as floats).
INPUT_TYPES = {"numeric": "double", "image": "binary"}  # everything else: "string"
REQUIREMENTS = ("mlflow", "cloudpickle", "tensorflow", "numpy", "pandas")


def bad_request(message: str) -> MlflowException:
    """An error `mlflow models serve` answers with HTTP 400."""
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def _spec_dict(spec) -> dict:
    return spec if isinstance(spec, dict) else spec.to_dict()


def _columns(item: dict) -> list:
    """The user's columns an input reads: its `column`, or a signal's `columns`."""
    return list(item.get("columns") or [item.get("column") or item["name"]])


def _float_lists(item: dict, data: dict) -> bool:
    """A signal of TFRecord data: its columns hold lists of floats (CSV: delimited cells)."""
    return item["modality"] == "signal" and data.get("format", "csv") != "csv"


def missing_tokens(spec) -> dict:
    """{input column: cells meaning "no value"}: the CSV reader's tokens (data.na_values, per
    column data.column_na_values, and an empty cell); for other formats an empty cell only."""
    spec = _spec_dict(spec)
    data = spec.get("data", {})
    out = {}
    for item in spec["inputs"]:
        for column in _columns(item):
            tokens = {""}
            if data.get("format", "csv") == "csv":
                tokens |= set(
                    data.get("column_na_values", {}).get(column, data.get("na_values", ()))
                )
            out[column] = sorted(tokens)
    return out


class MimoModel(mlflow.pyfunc.PythonModel):
    """A DataFrame of raw columns in, every head out (see the module's docstring)."""

    def __init__(self, columns: dict, heads: list, tokens: dict):
        # input name (serving_raw's) -> the user's columns (a name: one column, as pickled
        # before signals read several)
        self.columns = dict(columns)
        self.heads = list(heads)  # the spec's heads, in order (the output columns' order)
        self.tokens = {c: set(t) for c, t in tokens.items()}  # column -> missing-value cells

    def __getstate__(self):
        """What is pickled: the description, never a loaded SavedModel (MLflow loads the model
        to check the input example, then pickles the same object)."""
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def load_context(self, context):
        import tensorflow as tf

        self._loaded = tf.saved_model.load(context.artifacts[SAVED_MODEL])
        self._fn = self._loaded.signatures[SIGNATURE]
        specs = self._fn.structured_input_signature[1]
        unknown = sorted(set(specs) - set(self.columns))
        if unknown:
            raise RuntimeError(f"the SavedModel takes inputs the spec does not name: {unknown}")
        # serving_raw's dtypes: string, float32 (NaN = missing) or int64 (never missing); its
        # shapes: [batch] one value, [batch, channels] a cell per channel, [batch, steps,
        # channels] a float-list signal.
        self._dtypes = {name: s.dtype.name for name, s in sorted(specs.items())}
        self._shapes = {name: s.shape.as_list() for name, s in sorted(specs.items())}
        self._required = self._never_missing()

    def _of(self, name: str) -> list:
        columns = self.columns[name]
        return [columns] if isinstance(columns, str) else list(columns)

    def _call(self, feeds: dict) -> dict:
        import tensorflow as tf

        tensors = {
            name: tf.constant(values, dtype=self._dtypes[name]) for name, values in feeds.items()
        }
        return {k: v.numpy() for k, v in self._fn(**tensors).items()}

    def _never_missing(self) -> set:
        """The columns the model takes no missing value in: integers (serving_raw has no missing
        integer), and numbers exported as always present (their NaN makes a head's output NaN).
        One call: row 0 all present, row k+1 with the k-th number column missing."""
        scalar = [n for n, shape in self._shapes.items() if len(shape) == 1]
        numbers = [n for n in scalar if self._dtypes[n].startswith("float")]
        required = {self._of(n)[0] for n in scalar if self._dtypes[n].startswith("int")}
        if not numbers:
            return required
        rows = len(numbers) + 1
        feeds = {}
        for name, dtype in self._dtypes.items():
            if len(self._shapes[name]) > 1:  # a signal: no step at all, a missing signal
                shape = [rows, *(1 if s is None else s for s in self._shapes[name][1:])]
                feeds[name] = np.full(shape, b"" if dtype == "string" else np.nan)
            elif dtype == "string":
                feeds[name] = [b""] * rows
            elif name in numbers:
                feeds[name] = [np.nan if r == numbers.index(name) + 1 else 0.0 for r in range(rows)]
            else:
                feeds[name] = [0] * rows
        finite = np.ones(rows, bool)
        for value in self._call(feeds).values():
            if value.dtype.kind == "f":
                finite &= np.isfinite(value.reshape(rows, -1)).all(axis=1)
        return required | {self._of(n)[0] for i, n in enumerate(numbers) if not finite[i + 1]}

    # -- a request -------------------------------------------------------------------------------
    def _missing(self, series: pd.Series, column: str) -> np.ndarray:
        tokens = self.tokens.get(column, {""})
        return np.array([_is_na(v) or _token(v, tokens) for v in series], dtype=bool)

    def _values(self, series: pd.Series, column: str, name: str, dtype: str) -> list:
        missing = self._missing(series, column)
        if dtype == "string":
            return [
                b"" if m else v if isinstance(v, bytes) else str(v)
                for v, m in zip(series, missing, strict=True)
            ]
        if missing.any() and column in self._required:
            rows = _rows(missing)
            raise bad_request(
                f"column {column!r} has no value in {rows}: this model was trained on data where "
                f"{column!r} was always present, so it cannot take a missing value there"
            )
        out = []
        for row, (v, m) in enumerate(zip(series, missing, strict=True)):
            if m:
                out.append(np.nan)
                continue
            try:
                if isinstance(v, bool | np.bool_ | bytes):
                    raise TypeError(v)
                number = float(v)
            except (TypeError, ValueError):
                raise bad_request(
                    f"column {column!r} holds {v!r} in row {row}: not a number (input {name!r})"
                ) from None
            if dtype.startswith("int"):
                if not number.is_integer():
                    raise bad_request(
                        f"column {column!r} holds {v!r} in row {row}: not an integer (input {name!r})"
                    )
                number = int(number)
            out.append(number)
        return out

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        frame = model_input
        if not isinstance(frame, pd.DataFrame):
            try:
                frame = pd.DataFrame(frame)
            except (TypeError, ValueError):
                frame = pd.DataFrame()
        expected = [c for n in self.columns if n in self._dtypes for c in self._of(n)]
        if len(frame) == 0:
            raise bad_request(
                f"the request holds no rows: send one row per example with the columns {expected}"
            )
        absent = [c for c in expected if c not in frame.columns]
        if absent:
            raise bad_request(
                f"column {absent[0]!r} is missing from the request"
                + (f" (also missing: {absent[1:]})" if absent[1:] else "")
                + f"; the model's columns are {expected}"
            )
        feeds = {}
        for name, dtype in self._dtypes.items():
            columns, shape = self._of(name), self._shapes[name]
            if len(shape) == 3:
                feeds[name] = self._steps(frame, columns, name, shape[2])
                continue
            values = [self._values(frame[c], c, name, dtype) for c in columns]
            feeds[name] = values[0] if len(shape) == 1 else list(zip(*values, strict=True))
        return self._frame(self._call(feeds), len(frame))

    def _steps(self, frame: pd.DataFrame, columns: list, name: str, channels: int) -> np.ndarray:
        """Float-list cells -> [rows, steps, channels] float32, shorter rows padded with NaN
        (serving_raw's missing steps). One column: steps x channels values, step-major; several:
        one channel each."""
        width = channels if len(columns) == 1 else 1
        rows = []
        for row in range(len(frame)):
            parts = []
            for column in columns:
                cell = frame[column].iloc[row]
                if _is_na(cell) or _token(cell, self.tokens.get(column, {""})):
                    cell = []
                try:
                    values = np.asarray(cell, dtype=np.float64).reshape(-1)
                except (TypeError, ValueError):
                    raise bad_request(
                        f"column {column!r} holds {_shown(cell)} in row {row}: not a list of "
                        f"numbers (input {name!r}, a signal)"
                    ) from None
                if values.size % width:
                    raise bad_request(
                        f"column {column!r} holds {values.size} values in row {row}: not a "
                        f"whole number of steps of {width} channels (input {name!r})"
                    )
                parts.append(values.reshape(-1, width))
            steps = max(len(p) for p in parts)
            rows.append(
                np.concatenate(
                    [
                        np.pad(p, [(0, steps - len(p)), (0, 0)], constant_values=np.nan)
                        for p in parts
                    ],
                    axis=1,
                )
            )
        longest = max(1, *(len(r) for r in rows))
        out = np.full((len(rows), longest, channels), np.nan, np.float32)
        for n, r in enumerate(rows):
            out[n, : len(r)] = r
        return out

    def _frame(self, outputs: dict, n: int) -> pd.DataFrame:
        """One column per output, heads in the spec's order: [n, 1] as a value, [n, k] as a list;
        strings decoded."""
        order = []
        for head in self.heads:
            order += [k for k in (head, f"{head}_class", f"{head}_labels") if k in outputs]
        order += sorted(set(outputs) - set(order))
        columns = {}
        for key in order:
            value = outputs[key].reshape(n, -1)
            if value.dtype == object:
                value = np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(value)
            elif value.dtype.kind == "f":
                value = value.astype(np.float64)
            columns[key] = value[:, 0] if value.shape[1] == 1 else list(value.tolist())
        return pd.DataFrame(columns)


def _is_na(value) -> bool:
    return (
        value is None
        or value is pd.NA
        or (isinstance(value, float | np.floating) and bool(np.isnan(value)))
    )


def _token(value, tokens: set) -> bool:
    return isinstance(value, str) and value.strip() in tokens


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _rows(mask: np.ndarray) -> str:
    rows = [int(i) for i in np.flatnonzero(mask)]
    shown = ", ".join(map(str, rows[:10])) + (", ..." if len(rows) > 10 else "")
    return f"row{'s' if len(rows) > 1 else ''} {shown}"


# -- logging it -----------------------------------------------------------------------------------
def model_signature(spec):
    """Inputs: a column per spec input (double for numbers, binary for images, else string);
    outputs: per head what `MimoModel.predict` returns (preprocessing/heads: serving_outputs)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, Schema

    spec = _spec_dict(spec)
    data = spec.get("data", {})
    inputs = [
        ColSpec(
            Array("double") if _float_lists(i, data) else INPUT_TYPES.get(i["modality"], "string"),
            column,
            required=False,
        )
        for i in spec["inputs"]
        for column in _columns(i)
    ]
    outputs = []
    for head in spec["outputs"]:
        name, kind = head["name"], head["type"]
        if kind in ("regression", "binary"):
            outputs.append(ColSpec("double", name))
        else:  # multiclass, multilabel (and any head with a vector out)
            outputs.append(ColSpec(Array("double"), name))
        if kind == "multiclass":
            outputs.append(ColSpec("string", f"{name}_class"))
        elif kind == "multilabel":
            outputs.append(ColSpec(Array("string"), f"{name}_labels"))
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def eval_input_example(examples_uri: str, spec, rows: int = EXAMPLE_ROWS) -> pd.DataFrame | None:
    """The first `rows` eval examples of an Examples artifact (ExampleGen's Split-eval, any split
    when there is none) as a DataFrame of the spec's input columns, None where a value is
    missing; None when there are no examples there."""
    import tensorflow as tf

    spec = _spec_dict(spec)
    files = sorted(tf.io.gfile.glob(os.path.join(examples_uri, "Split-eval", "*")))
    files = files or sorted(tf.io.gfile.glob(os.path.join(examples_uri, "Split-*", "*")))
    if not files:
        return None
    records = tf.data.TFRecordDataset(files[:1], compression_type="GZIP").take(rows)
    table = []
    for record in records.as_numpy_iterator():
        features = tf.train.Example.FromString(record).features.feature
        row = {}
        for item in spec["inputs"]:
            for column in _columns(item):
                feature = features.get(column)
                kind = feature.WhichOneof("kind") if feature is not None else None
                values = list(getattr(feature, kind).value) if kind else []
                value = values[0] if values else None
                if _float_lists(item, spec.get("data", {})):
                    value = [float(v) for v in values] or None
                elif isinstance(value, bytes) and item["modality"] != "image":
                    value = value.decode("utf-8", errors="replace")
                row[column] = value
        table.append(row)
    if not table:
        return None
    frame = pd.DataFrame(table, columns=[c for i in spec["inputs"] for c in _columns(i)])
    for item in spec["inputs"]:
        if INPUT_TYPES.get(item["modality"]) == "double":
            for column in _columns(item):
                frame[column] = frame[column].astype(np.float64)
    return frame


def requirements() -> list[str]:
    """What the served model imports, pinned to this environment's versions (given, so that
    MLflow does not load the model in a subprocess to infer them)."""
    out = []
    for package in REQUIREMENTS:
        try:
            out.append(f"{package}=={importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(package)
    return out


def log_pyfunc_model(saved_model_dir: str, spec, input_example: pd.DataFrame | None = None):
    """Logs the SavedModel as an MLflow pyfunc model under "model" in the active run (one is
    started if none is); returns MLflow's ModelInfo. `spec`: a pipeline.spec.Spec or its dict.

    `input_example`: a few rows of raw input columns (the pusher passes the eval split's first
    rows, `eval_input_example`); MLflow stores it with the model and checks at logging that the
    model answers it. None: no example (the signature still describes the columns)."""
    spec = _spec_dict(spec)
    model = MimoModel(
        columns={i["name"]: _columns(i) for i in spec["inputs"]},
        heads=[o["name"] for o in spec["outputs"]],
        tokens=missing_tokens(spec),
    )
    return mlflow.pyfunc.log_model(
        artifact_path=ARTIFACT_PATH,
        python_model=model,
        artifacts={SAVED_MODEL: saved_model_dir},
        signature=model_signature(spec),
        input_example=input_example,
        pip_requirements=requirements(),
    )


def saved_model_path(model_dir: str) -> str:
    """The SavedModel inside a downloaded MLflow model folder: the pyfunc's `saved_model`
    artifact, or the folder itself for a version logged as plain SavedModel files (before the
    pyfunc flavour)."""
    from mlflow.models import Model

    if not os.path.isfile(os.path.join(model_dir, "MLmodel")):
        return model_dir
    flavor = Model.load(model_dir).flavors.get("python_function", {})
    artifact = flavor.get("artifacts", {}).get(SAVED_MODEL, {})
    return os.path.join(model_dir, artifact["path"]) if artifact else model_dir

"""Signals: a fixed-length numeric sequence with one or more channels (an ECG, a window of sensor
readings, a window of a series to forecast from).

Sources: a float list (a TFRecord feature of length x channels values, step-major: every
channel of step 0, then of step 1, ...), or a CSV cell of steps separated by `delimiter`, each
step's channels separated by `channel_delimiter` ("0.1,0.5;0.2,0.6;..."), or several columns
(`columns`), one per channel, each a one-channel signal of either kind. A missing or empty cell
is a missing signal; a step that does not parse is a missing step (with `columns`, a step is
real only where every channel has it).

Transform: per channel scaled on the training split's real steps (`scaling`; `per_position`
scales each step position of each channel on its own, as for spectra); shorter sequences padded
at the end and masked, longer ones cut to their first `length` steps. Out: `<name>`
[length, channels] and `<name>_mask` [length] (1.0 at real steps).

Tower: `encoder` conv1d (stacked causal-free convolutions, then masked mean and max pooling),
lstm or gru (masked); the shared missing-input path when the mask is all zero.
"""

import math
import re

import tensorflow as tf
import tensorflow_transform as tft

from preprocessing.base import BYTES, FLOAT, INT, Modality, raw_tensor
from preprocessing.options import (
    BOOLEAN,
    Choice,
    Integer,
    NameList,
    Nullable,
    Option,
    OptionError,
    String,
)
from preprocessing.registry import MODALITIES

NUMBER = r"[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?"
SAMPLE = 200  # CSV cells the data gate reads to check the steps' layout


def steps_of(x, channels: int, delimiter: str, channel_delimiter: str):
    """Raw column -> ([batch, None, channels] ragged float steps, [batch, None] step present).

    A float list (SparseTensor or dense) holds step-major values; a string cell holds
    `delimiter`-separated steps of `channel_delimiter`-separated channels."""
    if isinstance(x, tf.SparseTensor):
        x = tf.RaggedTensor.from_sparse(x)
    elif not isinstance(x, tf.RaggedTensor):
        x = tf.RaggedTensor.from_tensor(tf.convert_to_tensor(x))
    if x.dtype == tf.string:
        cells = tf.strings.strip(x.flat_values)
        rows = x.value_rowids()
        steps = tf.compat.v1.strings.split(cells, sep=delimiter, result_type="SparseTensor")
        text = tf.strings.strip(steps.values)
        keep = tf.strings.length(text) > 0
        text = tf.boolean_mask(text, keep)
        step_rows = tf.gather(rows, tf.boolean_mask(steps.indices[:, 0], keep))
        parts = tf.strings.split(text, sep=channel_delimiter)  # [steps, None]
        width = parts.row_lengths()
        dense = tf.strings.strip(parts.to_tensor(default_value="", shape=[None, channels]))
        numeric = tf.strings.regex_full_match(dense, NUMBER)
        number = tf.strings.to_number(tf.where(numeric, dense, "nan"), tf.float32)
        ok = tf.logical_and(
            tf.equal(width, channels),
            tf.reduce_all(tf.logical_not(tf.math.is_nan(number)), axis=1),
        )
        # A step whose text is not `channels` numbers is a missing step (its values 0).
        number = tf.where(ok[:, None], number, tf.zeros_like(number))
        nrows = tf.cast(x.nrows(), tf.int64)
        values = tf.RaggedTensor.from_value_rowids(number, step_rows, nrows=nrows, validate=False)
        present = tf.RaggedTensor.from_value_rowids(ok, step_rows, nrows=nrows, validate=False)
        return values, present
    flat = tf.cast(x, tf.float32)
    lengths = flat.row_lengths() // channels
    # A trailing partial step of a row is dropped; the rest is grouped by `channels`.
    keep = tf.ragged.range(flat.row_lengths()) < (lengths * channels)[:, None]
    grouped = tf.reshape(tf.ragged.boolean_mask(flat, keep).flat_values, [-1, channels])
    values = tf.RaggedTensor.from_row_lengths(grouped, lengths, validate=False)
    present = tf.RaggedTensor.from_row_lengths(
        tf.logical_not(tf.reduce_any(tf.math.is_nan(grouped), axis=1)), lengths, validate=False
    )
    values = tf.ragged.map_flat_values(
        lambda v: tf.where(tf.math.is_nan(v), tf.zeros_like(v), v), values
    )
    return values, present


class Signal(Modality):
    name = "signal"
    doc = "a fixed-length numeric sequence of one or more channels: scaled per channel, a 1-D conv or recurrent tower"
    schema_types = frozenset({FLOAT, INT, BYTES})
    csv_type = BYTES  # a CSV cell of delimited steps
    options = {
        "length": Option(100, "steps kept: shorter sequences are padded and masked", Integer(1)),
        "channels": Option(1, "values per step (step-major in a float list)", Integer(1)),
        "columns": Option(
            None,
            "several columns, one channel each (a cell of steps, or a float list); instead of "
            "`column`; channels: their count",
            Nullable(NameList(1, "column")),
        ),
        "delimiter": Option(";", "what separates the steps in a CSV cell", String()),
        "channel_delimiter": Option(
            ",", "what separates a step's channels in a CSV cell", String()
        ),
        "scaling": Option(
            "zscore",
            "per channel on the training split's real steps: zscore, minmax (into [0, 1]), none",
            Choice(("zscore", "minmax", "none")),
        ),
        "per_position": Option(
            False, "scale each step position of each channel on its own (spectra)", BOOLEAN
        ),
        "encoder": Option(
            "conv1d",
            "the tower: conv1d (convolutions, masked mean and max pooling), lstm or gru",
            Choice(("conv1d", "lstm", "gru")),
        ),
        "units": Option(32, "filters per convolution, or the recurrent layer's size", Integer(1)),
        "layers": Option(2, "convolutions (conv1d) or stacked recurrent layers", Integer(1)),
        "kernel_size": Option(5, "the convolutions' width in steps (conv1d)", Integer(1)),
    }

    def resolve(self, given):
        """With `columns`, `channels` is their count (it may be left out)."""
        options, errors = super().resolve(given)
        if not errors and options["columns"]:
            count = len(options["columns"])
            if "channels" in given and options["channels"] != count:
                errors.append(
                    OptionError(
                        "channels",
                        f"is {options['channels']}, but `columns` lists {count} (one per channel)",
                    )
                )
            options["columns"] = [str(c) for c in options["columns"]]
            options["channels"] = count
        return options, errors

    def columns(self, item):
        return tuple(item.options["columns"] or (item.column,))

    def input_checks(self, item, column, column_type, column_stats, cells):
        """A float list whose length is not a multiple of `channels`, or CSV cells whose steps do
        not read as `channels` numbers, would reach the model as masked (missing) steps: the
        whole input silently absent. Float lists: every split's shortest and longest list;
        CSV: the first SAMPLE cells."""
        channels = 1 if item.options["columns"] else item.options["channels"]
        role = f"column {column!r} (input '{item.name}', a signal of channels: {channels})"
        if column_type != BYTES:
            problems = []
            for split, feature in sorted(column_stats.items()):
                kind = feature.WhichOneof("stats")
                common = getattr(feature, kind).common_stats if kind else None
                if common is None:
                    continue
                counts = sorted({int(common.min_num_values), int(common.max_num_values)} - {0})
                odd = [n for n in counts if n % channels]
                if odd:
                    problems.append(
                        f"{role} holds lists of {' to '.join(map(str, counts))} values in split "
                        f"'{split}'; a signal's list is steps x channels values (step-major) and "
                        f"{odd[0]} is not a multiple of {channels}: check `channels`"
                    )
            return problems
        delimiter, channel_delimiter = item.options["delimiter"], item.options["channel_delimiter"]
        read, total, first_bad, widths, seen = 0, 0, None, {}, 0
        for where, text in cells():
            if seen >= SAMPLE:
                break
            seen += 1
            for step in (s.strip() for s in text.split(delimiter)):
                if not step:
                    continue
                values = [v.strip() for v in step.split(channel_delimiter)]
                total += 1
                widths[len(values)] = widths.get(len(values), 0) + 1
                if len(values) == channels and all(re.fullmatch(NUMBER, v) for v in values):
                    read += 1
                elif first_bad is None:
                    first_bad = (where, step)
        if total == 0 or read >= total / 2:
            return []
        where, step = first_bad
        common = max(widths, key=widths.get)
        shown = step if len(step) <= 40 else step[:37] + "..."
        found = (
            f"most steps hold {common} value(s)"
            if common != channels
            else f"most steps are not {channels} numbers"
        )
        return [
            f"{role}: only {read} of the {total} steps of its first {seen} cell(s) read as {channels} "
            f"number(s) separated by {channel_delimiter!r} (steps separated by {delimiter!r}); "
            f"{found}, e.g. {where}: {shown!r}. Check `channels`, `delimiter` and "
            "`channel_delimiter`"
        ]

    def output_names(self, item):
        return [item.name, f"{item.name}_mask"]

    def transform(self, x, item):
        options, name = item.options, item.name
        length, channels = options["length"], options["channels"]
        delimiters = options["delimiter"], options["channel_delimiter"]
        if options["columns"]:  # one channel per column; a step is real where all have it
            parts = [self._steps(column, 1, length, *delimiters) for column in x]
            dense = tf.concat([d for d, _ in parts], axis=2)
            mask = tf.reduce_min(tf.stack([m for _, m in parts], axis=2), axis=2)
        else:
            dense, mask = self._steps(x, channels, length, *delimiters)
        scaled = self._scale(dense, mask, options)
        return {name: scaled * mask[:, :, None], f"{name}_mask": mask}

    @staticmethod
    def _steps(x, channels, length, delimiter, channel_delimiter):
        """A raw column -> ([batch, length, channels] values, [batch, length] 1.0 at real steps)."""
        values, present = steps_of(x, channels, delimiter, channel_delimiter)
        dense = values.to_tensor(default_value=0.0, shape=[None, length, channels])
        mask = tf.cast(present.to_tensor(default_value=False, shape=[None, length]), tf.float32)
        return tf.reshape(dense, [-1, length, channels]), tf.reshape(mask, [-1, length])

    @staticmethod
    def _scale(dense, mask, options):
        if options["scaling"] == "none":
            return dense
        weight = mask[:, :, None]
        if options["per_position"]:
            # Per (position, channel): sums over the examples, weighted by the mask.
            count = tft.sum(tf.broadcast_to(weight, tf.shape(dense)), reduce_instance_dims=False)
            count = tf.maximum(count, 1.0)
            if options["scaling"] == "minmax":
                big = tf.constant(3.0e38)
                low = -tft.max(-(dense * weight + big * (1 - weight)), reduce_instance_dims=False)
                high = tft.max(dense * weight - big * (1 - weight), reduce_instance_dims=False)
            else:
                mean = tft.sum(dense * weight, reduce_instance_dims=False) / count
                square = tft.sum(dense * dense * weight, reduce_instance_dims=False) / count
        else:
            # Per channel over every real step of every example.
            steps = tf.boolean_mask(dense, mask > 0)  # [real steps, channels]
            if options["scaling"] == "minmax":
                low = tft.min(steps, reduce_instance_dims=False)
                high = tft.max(steps, reduce_instance_dims=False)
            else:
                mean = tft.mean(steps, reduce_instance_dims=False)
                square = tft.mean(steps * steps, reduce_instance_dims=False)
        if options["scaling"] == "minmax":
            span = tf.where(high > low, high - low, tf.ones_like(high))
            return (dense - low) / span
        var = tf.maximum(square - mean * mean, 0.0)
        std = tf.where(var > 1e-12, tf.sqrt(var), tf.ones_like(var))
        return (dense - mean) / std

    # -- serving_raw: a CSV-cell signal takes its cell ([batch] strings; with `columns`,
    # [batch, channels]: a cell per channel); a float-list signal [batch, steps, channels]
    # floats, shorter sequences padded with NaN (a NaN step is a missing step).
    def serving_spec(self, item, features):
        columns, channels = self.columns(item), item.options["channels"]
        if features[columns[0]].dtype == tf.string:
            if len(columns) == 1:
                return super().serving_spec(item, features)
            return tf.TensorSpec([None, channels], tf.string, name=item.name)
        return tf.TensorSpec([None, None, channels], tf.float32, name=item.name)

    def serving_tensor(self, values, item, features):
        columns = self.columns(item)
        if len(columns) == 1:
            return {
                columns[0]: self._column(values, item.options["channels"], features[columns[0]])
            }
        if features[columns[0]].dtype == tf.string:
            return {c: raw_tensor(values[:, n], features[c]) for n, c in enumerate(columns)}
        return {
            c: self._column(values[:, :, n : n + 1], 1, features[c]) for n, c in enumerate(columns)
        }

    @staticmethod
    def _column(values, channels, feature):
        """serving_raw's values of one column -> what the transform layer reads."""
        if feature.dtype == tf.string:
            return raw_tensor(values, feature)
        rows = tf.shape(values)[0]
        real = tf.reduce_any(tf.logical_not(tf.math.is_nan(values)), axis=2)  # [batch, steps]
        positions = tf.range(tf.shape(values)[1])[None, :]
        # Each row up to its last real step; NaN steps before it stay (missing steps).
        lengths = tf.reduce_max(tf.where(real, positions + 1, 0), axis=1)
        flat = tf.reshape(values, [rows, -1])
        keep = tf.range(tf.shape(flat)[1])[None, :] < (lengths * channels)[:, None]
        ragged = tf.ragged.boolean_mask(flat, keep)
        if isinstance(feature, tf.io.FixedLenFeature):  # every training row had this length
            size = math.prod(feature.shape)
            dense = ragged.to_tensor(default_value=float("nan"), shape=[None, size])
            return tf.cast(dense, feature.dtype)
        return tf.cast(ragged, feature.dtype).to_sparse()

    def tower(self, inputs, item, info):
        import tf_keras as keras

        from trainer.layers import MaskedPooling, Presence, StepMask

        options, name = item.options, item.name
        x, mask = inputs[name], inputs[f"{name}_mask"]
        present = Presence("nonzero", name=f"{name}_present")(mask)
        # Padded steps hold 0 (Transform does it; a hand-fed tensor may not).
        x = keras.layers.Multiply(name=f"{name}_masked")(
            [x, keras.layers.Reshape((-1, 1), name=f"{name}_mask_steps")(mask)]
        )
        if options["encoder"] == "conv1d":
            for i in range(options["layers"]):
                x = keras.layers.Conv1D(
                    options["units"],
                    options["kernel_size"],
                    padding="same",
                    activation="relu",
                    name=f"{name}_conv{i}",
                )(x)
            pooled = [
                MaskedPooling(mode, name=f"{name}_{mode}")(x, mask) for mode in ("mean", "max")
            ]
            return keras.layers.Concatenate(name=f"{name}_pooled")(pooled), present
        layer = keras.layers.LSTM if options["encoder"] == "lstm" else keras.layers.GRU
        steps_mask = StepMask(name=f"{name}_step_mask")(mask)
        for i in range(options["layers"]):
            last = i == options["layers"] - 1
            x = layer(
                options["units"], return_sequences=not last, name=f"{name}_{options['encoder']}{i}"
            )(x, mask=steps_mask)
        return x, present


MODALITIES.register(Signal())

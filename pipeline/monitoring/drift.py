"""Drift, skew and prediction drift: TFDV's comparators, reported per input and per head.

One function compares two sets of statistics (`compare`): the columns of the inputs whose
modality says what to compare (`Modality.drift`: a number's histogram, a category's value
frequencies) get TFDV's `drift_comparator` (drift: another span's training data) or
`skew_comparator` (skew: served requests) with the spec's thresholds (`monitoring:`), and
`tfdv.validate_statistics` measures each distance (its `drift_skew_info`). Each measurement
becomes a `Finding` with the values or buckets that moved most, so a verdict says what changed.

Numbers are compared on the control's deciles, not on TFDV's ten equal-width buckets. Equal
widths put a long-tailed column's mass in one or two buckets whose bounds follow each sample's
maximum, and TFDV's re-bucketing (mass spread evenly inside a bucket) then reads two samples of
the same data as drifted (the full movies' runtime, eval split against train: 0.169 on
equal-width buckets, 0.0012 on deciles). `aligned` rewrites both sides' histograms onto the
control's quantile boundaries (TFDV's QUANTILES histogram; the end buckets open, so values
beyond the control's range count), and TFDV measures the divergence on them.

A published version carries the statistics and schema of the data it was trained on (the
pusher writes them into `<version>/monitoring/`, `published_files`): the data gate compares a
new span with them, and `mimo monitor` compares served requests with them.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

MONITORING_DIR = "monitoring"  # in a published version
TRAIN_STATISTICS = f"{MONITORING_DIR}/train_statistics.pb"  # a DatasetFeatureStatisticsList
SCHEMA = f"{MONITORING_DIR}/schema.pbtxt"

# TFDV's measurement types, by the spec's names.
_MEASURES = {"L_INFTY": "infinity_norm", "JENSEN_SHANNON_DIVERGENCE": "jensen_shannon"}


@dataclass(frozen=True)
class Finding:
    """One distance between two distributions of a column (an input's, or a head's
    predictions)."""

    kind: str  # "input" or "head"
    name: str  # the input's or head's name
    column: str  # the column compared (an input's raw column; a head's prediction)
    distance: str  # jensen_shannon or infinity_norm
    value: float
    threshold: float
    moved: str = ""  # the values or buckets whose share moved most, in a few words
    count: int = 0  # examples with a value, in the data compared
    control_count: int = 0  # and in the data it is compared with

    @property
    def over(self) -> bool:
        return self.value > self.threshold

    def to_dict(self) -> dict:
        return {**asdict(self), "over": self.over}

    # A table row (the terminal's, the HTML report's): its cells under `CELLS`.
    CELLS = ("", "column", "examples", "distance", "value", "threshold", "verdict")

    def cells(self) -> list[str]:
        return [
            f"{self.kind} {self.name}",
            self.column,
            f"{self.count} vs {self.control_count}",
            self.distance,
            f"{self.value:.3f}",
            f"{self.threshold:g}",
            "OVER" if self.over else "ok",
        ]

    def line(self, what: str) -> str:
        """One sentence: what moved, by how much, against which threshold."""
        verdict = "over" if self.over else "within"
        column = f" (column {self.column!r})" if self.column != self.name else ""
        moved = f"; moved most: {self.moved}" if self.moved else ""
        return (
            f"{self.kind} {self.name!r}{column}: {what} {self.distance} {self.value:.3f} "
            f"{verdict} its threshold {self.threshold:g} (values in {self.count} examples "
            f"against {self.control_count}){moved}"
        )


def input_thresholds(spec) -> dict:
    """{column: (input name, {distance: threshold})} of every compared input column."""
    out = {}
    monitoring = spec.monitoring
    for item in spec.inputs:
        kind = item.modality_type.drift
        if not kind:
            continue
        thresholds = dict(monitoring["inputs"].get(item.name, monitoring["drift"]))
        if kind != "categories":
            thresholds.pop("infinity_norm", None)  # TFDV's L-infinity is of categories only
        if thresholds:
            for column in item.columns:
                out[column] = (item.name, thresholds)
    return out


def compare(
    current,
    control,
    schema,
    thresholds: dict,
    how: str = "drift",
    kind: str = "input",
) -> list[Finding]:
    """TFDV's distances between `current` and `control` (DatasetFeatureStatisticsList) for the
    columns of `thresholds` ({column: (name, {distance: threshold})}), measured with `schema`'s
    features as comparators (how: "drift" between spans, "skew" against served data)."""
    import tensorflow_data_validation as tfdv

    schema = _comparable_schema(schema, thresholds)
    for feature in schema.feature:
        name, limits = thresholds[feature.name]
        comparator = getattr(feature, f"{how}_comparator")
        for distance, threshold in limits.items():
            if distance == "infinity_norm":
                comparator.infinity_norm.threshold = threshold
            else:
                comparator.jensen_shannon_divergence.threshold = threshold
    current, control = aligned(current, control, thresholds)
    if how == "drift":
        anomalies = tfdv.validate_statistics(current, schema, previous_statistics=control)
    else:
        anomalies = tfdv.validate_statistics(current, schema, serving_statistics=control)
    now, before = _features(current), _features(control)  # aligned: `moved` reads deciles
    findings = []
    for info in anomalies.drift_skew_info:
        column = info.path.step[0]
        name, _ = thresholds[column]
        measurements = info.drift_measurements if how == "drift" else info.skew_measurements
        for m in measurements:
            distance = _MEASURES.get(m.Type.Name(m.type))
            if distance is None:
                continue
            findings.append(
                Finding(
                    kind=kind,
                    name=name,
                    column=column,
                    distance=distance,
                    value=float(m.value),
                    threshold=float(m.threshold),
                    moved=moved(now.get(column), before.get(column)),
                    count=_present(now.get(column)),
                    control_count=_present(before.get(column)),
                )
            )
    return sorted(findings, key=lambda f: (f.kind, f.name, f.distance))


def aligned(current, control, thresholds: dict):
    """(current, control) copies whose compared numeric columns' STANDARD histograms are both
    on the control's deciles (`decile_shares`), so TFDV's divergence on them is the exact
    divergence between the two columns' shares of those buckets."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    before = _features(control)
    bins = {}
    for column, feature in _features(current).items():
        if column in thresholds and column in before:
            shares = decile_shares(feature, before[column])
            if shares is not None:
                bins[column] = shares
    out = []
    for stats, side in ((current, 2), (control, 1)):
        copy = statistics_pb2.DatasetFeatureStatisticsList()
        copy.CopyFrom(stats)
        for column, feature in _features(copy).items():
            if column not in bins:
                continue
            edges, share = bins[column][0], bins[column][side]
            histogram = _standard(feature.num_stats)
            histogram.ClearField("buckets")
            total = feature.num_stats.common_stats.num_non_missing
            for low, high, part in zip(edges[:-1], edges[1:], share, strict=True):
                histogram.buckets.add(low_value=low, high_value=high, sample_count=part * total)
        out.append(copy)
    return out[0], out[1]


def decile_shares(now, before):
    """(bucket edges, the control's share of each bucket, the current's share) on the control's
    quantile boundaries u0 < ... < uk: buckets (-inf, u0] (a point mass at the minimum),
    (u0, u1], ..., (uk-1, inf); or None without both sides' QUANTILES histograms. Shares inside
    one of a side's own quantile buckets are spread evenly (a zero-width bucket is a point)."""
    if not (now.HasField("num_stats") and before.HasField("num_stats")):
        return None
    q_now, q_before = _quantiles(now.num_stats), _quantiles(before.num_stats)
    if None in (q_now, q_before, _standard(now.num_stats), _standard(before.num_stats)):
        return None
    bounds = sorted(
        {b.low_value for b in q_before.buckets} | {b.high_value for b in q_before.buckets}
    )
    if len(bounds) < 2:  # a constant control column: no deciles to compare on
        return None
    width = (bounds[-1] - bounds[0]) or 1.0
    edges = [bounds[0] - width, *bounds[:-1], max(bounds[-1], q_now.buckets[-1].high_value) + width]
    return edges, _shares(q_before, bounds), _shares(q_now, bounds)


def _shares(histogram, bounds) -> list[float]:
    total = sum(b.sample_count for b in histogram.buckets) or 1.0

    def below(x):  # the histogram's count of values <= x
        got = 0.0
        for b in histogram.buckets:
            width = b.high_value - b.low_value
            if width <= 0:
                got += b.sample_count if b.low_value <= x else 0.0
            else:
                got += b.sample_count * min(1.0, max(0.0, (x - b.low_value) / width))
        return got

    cumulative = [below(x) for x in bounds]
    counts = [cumulative[0]] + [
        b - a for a, b in zip(cumulative[:-2], cumulative[1:-1], strict=True)
    ]
    counts.append(total - cumulative[-2])  # above the last inner bound, however far
    return [c / total for c in counts]


def missing(current, control, thresholds: dict) -> list[str]:
    """The compared columns one side has no statistics of (a column gone or new)."""
    now, before = _features(current), _features(control)
    return sorted(c for c in thresholds if (c in now) != (c in before) or c not in now)


def _comparable_schema(schema, thresholds):
    """The schema's features of the compared columns only, without their own comparators."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    out = schema_pb2.Schema()
    for feature in schema.feature:
        if feature.name in thresholds:
            copy = out.feature.add()
            copy.CopyFrom(feature)
            copy.ClearField("drift_comparator")
            copy.ClearField("skew_comparator")
    return out


def _features(statistics_list) -> dict:
    """{column: FeatureNameStatistics} of the list's first (whole-data) dataset."""
    if statistics_list is None or not statistics_list.datasets:
        return {}
    return {
        (f.path.step[0] if f.path.step else f.name): f for f in statistics_list.datasets[0].features
    }


def _present(feature) -> int:
    """Examples with a value of the column (TFDV's common statistics)."""
    if feature is None or not feature.WhichOneof("stats"):
        return 0
    return int(getattr(feature, feature.WhichOneof("stats")).common_stats.num_non_missing)


def moved(now, before, top: int = 3) -> str:
    """The values (categories) or training buckets (numbers) whose share moved most."""
    if now is None or before is None:
        return ""
    if now.HasField("num_stats") and before.HasField("num_stats"):
        return _moved_buckets(now.num_stats, before.num_stats, top)
    if now.HasField("string_stats") and before.HasField("string_stats"):
        a, b = _frequencies(now.string_stats), _frequencies(before.string_stats)
        changes = sorted(
            ((abs(a.get(v, 0.0) - b.get(v, 0.0)), v) for v in set(a) | set(b)), reverse=True
        )
        return ", ".join(
            f"{v!r} {_pct(b.get(v, 0.0))} -> {_pct(a.get(v, 0.0))}"
            for change, v in changes[:top]
            if change >= 0.005
        )
    return ""


def _frequencies(string_stats) -> dict:
    """{value: share of the values} from TFDV's top values (its rank histogram when longer)."""
    counts = {v.value: v.frequency for v in string_stats.top_values}
    if string_stats.rank_histogram.buckets:
        ranked = {b.label: b.sample_count for b in string_stats.rank_histogram.buckets}
        if len(ranked) > len(counts):
            counts = ranked
    total = string_stats.common_stats.tot_num_values or sum(counts.values()) or 1
    return {v: c / total for v, c in counts.items()}


def _standard(num_stats):
    return _histogram(num_stats, "STANDARD")


def _quantiles(num_stats):
    return _histogram(num_stats, "QUANTILES")


def _histogram(num_stats, kind: str):
    for h in num_stats.histograms:
        if h.type == getattr(h, kind) and h.buckets:
            return h
    return None


def _moved_buckets(now, before, top) -> str:
    """The control histogram's buckets (the end ones open) with the new data's share in each
    (spread evenly inside its own buckets; exact once `aligned`), largest changes first; with
    the two means."""
    hb, hn = _standard(before), _standard(now)
    means = f"mean {before.mean:.4g} -> {now.mean:.4g}"
    if hb is None or hn is None:
        return means
    total_b = sum(b.sample_count for b in hb.buckets) or 1.0
    total_n = sum(b.sample_count for b in hn.buckets) or 1.0

    def share(low, high, last):
        got = 0.0
        for b in hn.buckets:
            width = b.high_value - b.low_value
            if width <= 0:  # a point mass
                inside = low <= b.low_value < high or (last and b.low_value == high)
                got += b.sample_count if inside else 0.0
            else:
                overlap = min(high, b.high_value) - max(low, b.low_value)
                got += b.sample_count * max(0.0, overlap) / width
        return got / total_n

    rows = []
    last = len(hb.buckets) - 1
    for n, b in enumerate(hb.buckets):
        low = -math.inf if n == 0 else b.low_value
        high = math.inf if n == last else b.high_value
        new = share(low, high, n == last)
        old = b.sample_count / total_b
        where = (
            f"<= {b.high_value:.4g}"
            if n == 0
            else f"> {b.low_value:.4g}"
            if n == last
            else f"({b.low_value:.4g}, {b.high_value:.4g}]"
        )
        rows.append((abs(new - old), where, old, new))
    rows.sort(reverse=True)
    buckets = ", ".join(
        f"{r} {_pct(o)} -> {_pct(n)}" for change, r, o, n in rows[:top] if change >= 0.005
    )
    return f"{means}; {buckets}" if buckets else means


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%" if x >= 0.01 or x == 0 else f"{100 * x:.1f}%"


def table(findings: list[Finding], title: str) -> str:
    """The terminal's table: name, column, distance, value, threshold, verdict."""
    header = Finding.CELLS
    rows = [f.cells() for f in findings]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [title] + [
        ("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))).rstrip()
        for r in [header, *rows]
    ]
    return "\n".join(lines)


# -- what a published version carries ----------------------------------------------------------
def published_files(statistics_uri: str, schema_uri: str) -> dict:
    """{file in the version: source} of the training data's statistics and schema (the
    StatisticsGen and SchemaGen artifacts' files)."""
    return {
        TRAIN_STATISTICS: os.path.join(statistics_uri, "Split-train", "FeatureStats.pb"),
        SCHEMA: os.path.join(schema_uri, "schema.pbtxt"),
    }


def read_published(version_dir: str):
    """(train statistics, schema) a published version carries, or None (pushed before
    monitoring, or not found)."""
    import tensorflow as tf
    from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2
    from tfx.utils import io_utils

    stats_path = os.path.join(version_dir, TRAIN_STATISTICS)
    schema_path = os.path.join(version_dir, SCHEMA)
    if not (tf.io.gfile.exists(stats_path) and tf.io.gfile.exists(schema_path)):
        return None
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    stats.ParseFromString(io_utils.read_bytes_file(stats_path))
    return stats, io_utils.parse_pbtxt_file(schema_path, schema_pb2.Schema())

"""Builds the bundled data sets and their test fixtures. Re-running it reproduces the files.

    python data/prepare.py movies   # data/movies/movies.csv and data/movies/fixture/movies.csv
    python data/prepare.py digits   # data/digits/digits.tfrecord and its fixture
    python data/prepare.py motions  # data/motions/motions.csv (sensor signals)
    python data/prepare.py airline  # data/airline/{train,validation,eval}.csv (forecasting)

movies: the CC0 Wikidata film snapshot shipped in the PyPI wheel bokeh-sampledata==2026.1
(bokeh_sampledata/_data/movies.db). The wheel is fetched with `pip download --no-deps` and read
as a zip: it is never installed (its dependencies conflict with TFX's pandas pin).
digits: scikit-learn's bundled load_digits, written as PNG bytes in tf.Example TFRecords.
motions and airline: BasicMotions (UEA archive) and the airline passengers series, as shipped in
the PyPI wheel sktime==1.2.0 (BSD-3-Clause), fetched and read the same way as movies.
"""

from __future__ import annotations

import argparse
import csv
import glob
import hashlib
import io
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
WHEEL = "bokeh-sampledata==2026.1"
MOVIES_DB = "bokeh_sampledata/_data/movies.db"
MOVIES_DB_SHA256 = "1d9c6a02e488d0354b2309e16130c58820a91ac2ce417e814c5964f9579a65ac"
FIXTURE_ROWS = 400
SEED = 20261122

# Label-leaking columns are left out on purpose: Fresh/Rotten derive from Meter, Awards mentions
# Oscars, the critics' Rating and Metacritic nearly restate Meter. Films without a tomatometer are
# kept (the meter head masks them; they still have Oscars and genres); the test fixture samples
# films with one, and the tests blank labels themselves.
MOVIES_QUERY = """
SELECT o.ID, o.Title, o.Year, o.Runtime, t.Reviews, o.Rating AS MPAA, o.Language, o.Country,
       t.Production, o.Director, o.Writer, o.Cast, o.Genre, t.Meter, o.Oscars
FROM omdb o LEFT JOIN tomatoes t ON o.ID = t.ID
ORDER BY o.ID
"""
METER = 13  # the Meter column of the query


def _clean(value):
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return " ".join(str(value).split())  # no newlines or tabs inside a CSV field


def _write_csv(path: str, header: list[str], rows: list[tuple]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    print(f"wrote {path}: {len(rows)} rows")


def fetch_movies_db(workdir: str) -> str:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", workdir, WHEEL],
        check=True,
    )
    (wheel,) = glob.glob(os.path.join(workdir, "bokeh_sampledata-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        z.extract(MOVIES_DB, workdir)
    path = os.path.join(workdir, MOVIES_DB)
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if digest != MOVIES_DB_SHA256:
        raise SystemExit(f"{WHEEL}: movies.db has sha256 {digest}, expected {MOVIES_DB_SHA256}")
    return path


def movies() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(fetch_movies_db(tmp))
        cursor = db.execute(MOVIES_QUERY)
        header = [d[0] for d in cursor.description]
        rows = [tuple(_clean(v) for v in row) for row in cursor]
        db.close()
    out = os.path.join(HERE, "movies")
    _write_csv(os.path.join(out, "movies.csv"), header, rows)
    fixture = random.Random(SEED).sample([r for r in rows if r[METER] != ""], FIXTURE_ROWS)
    fixture.sort(key=lambda r: int(r[0]))
    _write_csv(os.path.join(out, "fixture", "movies.csv"), header, fixture)


def digits() -> None:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import numpy as np
    import tensorflow as tf
    from PIL import Image
    from sklearn.datasets import load_digits

    bunch = load_digits()
    records = []
    for pixels, target in zip(bunch.images, bunch.target, strict=False):
        gray = np.clip(pixels * (255.0 / 16.0), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(gray, mode="L").save(buf, format="PNG")
        feature = {
            "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[buf.getvalue()])),
            "ink": tf.train.Feature(float_list=tf.train.FloatList(value=[float(gray.mean())])),
            "digit": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(target)])),
            "odd": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(target) % 2])),
        }
        records.append(
            tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
        )
    out = os.path.join(HERE, "digits")
    for path, subset in (
        (os.path.join(out, "digits.tfrecord"), records),
        (
            os.path.join(out, "fixture", "digits.tfrecord"),
            random.Random(SEED).sample(records, FIXTURE_ROWS),
        ),
    ):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with tf.io.TFRecordWriter(path) as w:
            for r in subset:
                w.write(r)
        print(f"wrote {path}: {len(subset)} examples")


SKTIME_WHEEL = "sktime==1.2.0"
SKTIME_FILES = {  # file in the wheel: sha256
    "sktime/datasets/data/BasicMotions/BasicMotions_TRAIN.ts": (
        "8dc43cc6306cb679c888c01e26f91772ac4441a916da43bac8b79734a538b9d6"
    ),
    "sktime/datasets/data/BasicMotions/BasicMotions_TEST.ts": (
        "79213102bc6fca1a398ad98ce1185dff0208fa3d1465e687f48288946b0ff8dc"
    ),
    "sktime/datasets/data/Airline/Airline.csv": (
        "28af0eb869db6d9fbd31d5af03993a0cbf36c0857c3eb046a068c094b60da851"
    ),
}
INTENSE = {"Running", "Badminton"}  # the motions' second head: an intense activity
WINDOW, HORIZONS, GAP = (
    24,
    3,
    2,
)  # airline: months in, months ahead, windows left out between splits


def sktime_files(workdir: str) -> dict:
    """{file in the wheel: its text}, each checked against its sha256."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", workdir]
        + [SKTIME_WHEEL],
        check=True,
    )
    (wheel,) = glob.glob(os.path.join(workdir, "sktime-*.whl"))
    out = {}
    with zipfile.ZipFile(wheel) as z:
        for name, expected in SKTIME_FILES.items():
            data = z.read(name)
            digest = hashlib.sha256(data).hexdigest()
            if digest != expected:
                raise SystemExit(f"{SKTIME_WHEEL}: {name} has sha256 {digest}, expected {expected}")
            out[name] = data.decode("utf-8")
    return out


def _ts_cases(text: str) -> list[tuple[list[list[float]], str]]:
    """A .ts file's cases: ([dimension][step] values, class label)."""
    cases = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "@")):
            continue
        *dims, label = line.split(":")
        cases.append(([[float(v) for v in d.split(",")] for d in dims], label))
    return cases


def _cell(channels: list[list[float]]) -> str:
    """Steps separated by ';', each step's channels by ',' (the signal modality's CSV cell)."""
    return ";".join(",".join(f"{c[t]:.6g}" for c in channels) for t in range(len(channels[0])))


def motions() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        files = sktime_files(tmp)
    rows = []
    for part in ("TRAIN", "TEST"):
        path = f"sktime/datasets/data/BasicMotions/BasicMotions_{part}.ts"
        for n, (dims, label) in enumerate(_ts_cases(files[path])):
            # Dimensions 0-2: the watch's accelerometer (x, y, z); 3-5: its gyroscope.
            rows.append(
                (f"{part.lower()}-{n:02d}", label, int(label in INTENSE), _cell(dims[:3]))
                + (_cell(dims[3:]),)
            )
    header = ["id", "activity", "intense", "accelerometer", "gyroscope"]
    _write_csv(os.path.join(HERE, "motions", "motions.csv"), header, rows)


def airline() -> None:
    """Windows of WINDOW months of passengers, the next HORIZONS months as targets; split by
    time (train, then validation, then eval), GAP windows dropped between splits so that no
    month is a target on both sides of a boundary."""
    with tempfile.TemporaryDirectory() as tmp:
        files = sktime_files(tmp)
    series = []
    for line in files["sktime/datasets/data/Airline/Airline.csv"].splitlines()[1:]:
        if line.strip():
            month, passengers = line.split(",")
            series.append((month, float(passengers)))
    windows = []
    for start in range(len(series) - WINDOW - HORIZONS + 1):
        inputs = [v for _, v in series[start : start + WINDOW]]
        targets = [v for _, v in series[start + WINDOW : start + WINDOW + HORIZONS]]
        first = series[start + WINDOW][0]  # the month of the first target, "YYYY-MM"
        windows.append(
            (first, first[5:], ";".join(f"{v:g}" for v in inputs), *(f"{v:g}" for v in targets))
        )
    n = len(windows)
    n_eval = n_validation = round(0.15 * n)
    n_train = n - n_eval - n_validation - 2 * GAP
    splits = {
        "train": windows[:n_train],
        "validation": windows[n_train + GAP : n_train + GAP + n_validation],
        "eval": windows[n - n_eval :],
    }
    header = ["month", "calendar_month", "passengers", *(f"next_{h + 1}" for h in range(HORIZONS))]
    for name, rows in splits.items():
        _write_csv(os.path.join(HERE, "airline", f"{name}.csv"), header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=["movies", "digits", "motions", "airline", "all"])
    args = parser.parse_args()
    if args.dataset in ("movies", "all"):
        movies()
    if args.dataset in ("digits", "all"):
        digits()
    if args.dataset in ("motions", "all"):
        motions()
    if args.dataset in ("airline", "all"):
        airline()


if __name__ == "__main__":
    main()

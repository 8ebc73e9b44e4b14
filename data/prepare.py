"""Builds the bundled data sets and their test fixtures. Re-running it reproduces the files.

    python data/prepare.py movies   # data/movies/movies.csv and data/movies/fixture/movies.csv
    python data/prepare.py digits   # data/digits/digits.tfrecord and its fixture

movies: the CC0 Wikidata film snapshot shipped in the PyPI wheel bokeh-sampledata==2026.1
(bokeh_sampledata/_data/movies.db). The wheel is fetched with `pip download --no-deps` and read
as a zip: it is never installed (its dependencies conflict with TFX's pandas pin).
digits: scikit-learn's bundled load_digits, written as PNG bytes in tf.Example TFRecords.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=["movies", "digits", "all"])
    args = parser.parse_args()
    if args.dataset in ("movies", "all"):
        movies()
    if args.dataset in ("digits", "all"):
        digits()


if __name__ == "__main__":
    main()

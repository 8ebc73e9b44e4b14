"""Each modality's transform and each head's label transform, run with tf.Transform's Beam
implementation on real rows of the bundled fixtures."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import (
    DIGITS_FIXTURE_SPEC,
    MOVIES_FIXTURE_CSV,
    digits_examples,
    read_csv_columns,
    tft_examples,
)
from tft_harness import run_transform

from pipeline.spec import Spec, load_spec
from preprocessing.modalities.text import tokenize

ROWS = 120
UNSEEN = "ZZ-unseen-rating"


@pytest.fixture(scope="module")
def movies():
    """One TFT run over fixture rows, with every modality, option variant and head type."""
    rows, kinds = read_csv_columns(MOVIES_FIXTURE_CSV, ROWS)
    # Variants of real columns (the spec forbids using one column twice).
    for r in rows:
        r["YearMinMax"] = r["Year"]
        r["GenreBag"] = r["Genre"]
        r["MPAA"] = r["MPAA"]
        r["RuntimeSparse"] = r["Runtime"]
    rows[0]["MPAA"] = UNSEEN  # a value the vocabulary will not keep (frequency_threshold 2)
    rows[1]["RuntimeSparse"] = ""  # a missing numeric value
    kinds.update(YearMinMax="int", GenreBag="bytes", RuntimeSparse="float")
    spec = Spec.from_dict(
        {
            "name": "t",
            "data": {"path": MOVIES_FIXTURE_CSV},
            "inputs": [
                {
                    "name": "title",
                    "column": "Title",
                    "modality": "text",
                    "max_length": 6,
                    "frequency_threshold": 1,
                },
                {
                    "name": "cast",
                    "column": "Cast",
                    "modality": "multi_value",
                    "max_length": 5,
                    "frequency_threshold": 1,
                },
                {
                    "name": "genres_bag",
                    "column": "GenreBag",
                    "modality": "multi_value",
                    "encoding": "bag",
                    "top_k": 30,
                    "frequency_threshold": 1,
                },
                {"name": "year", "column": "Year", "modality": "numeric"},
                {
                    "name": "year_mm",
                    "column": "YearMinMax",
                    "modality": "numeric",
                    "scaling": "minmax",
                },
                {"name": "reviews", "column": "Reviews", "modality": "numeric", "scaling": "log"},
                {"name": "runtime", "column": "RuntimeSparse", "modality": "numeric"},
                {
                    "name": "mpaa",
                    "column": "MPAA",
                    "modality": "categorical",
                    "frequency_threshold": 2,
                    "num_oov_buckets": 2,
                },
            ],
            "outputs": [
                {"name": "meter", "column": "Meter", "type": "regression"},
                {"name": "oscar", "column": "Oscars", "type": "binary"},
                {
                    "name": "genre",
                    "column": "Genre",
                    "type": "multilabel",
                    "classes": ["Drama", "Comedy", "Horror"],
                },
                {"name": "lang", "column": "Language", "type": "multiclass"},
            ],
            "slices": [
                {"name": "decade", "column": "Year", "bucket_width": 10},
                {"name": "mpaa", "column": "MPAA"},
            ],
        }
    )
    instances, feature_spec = tft_examples(rows, kinds)
    out, tft_output = run_transform(spec, instances, feature_spec)
    return rows, out, tft_output


def test_numeric_zscore_log_minmax_and_missing(movies):
    rows, out, _ = movies
    year = out["year"]
    assert abs(year.mean()) < 1e-4 and abs(year.std() - 1) < 1e-3
    assert np.all(out["year_missing"] == 0)
    raw_year = np.array([float(r["Year"]) for r in rows])
    assert np.allclose(year, (raw_year - raw_year.mean()) / raw_year.std(), atol=1e-4)
    log_reviews = np.log1p(np.array([float(r["Reviews"] or 0) for r in rows]))
    present = np.array([r["Reviews"] != "" for r in rows])
    expected = (log_reviews - log_reviews[present].mean()) / log_reviews[present].std()
    assert np.allclose(out["reviews"][present], expected[present], atol=1e-3)
    mm = out["year_mm"]
    assert mm.min() == pytest.approx(0) and mm.max() == pytest.approx(1)
    assert np.allclose(
        mm, (raw_year - raw_year.min()) / (raw_year.max() - raw_year.min()), atol=1e-5
    )
    # A missing value is imputed with the mean (0 after z-scoring) and flagged.
    assert out["runtime_missing"][1] == 1 and out["runtime"][1] == pytest.approx(0, abs=1e-5)
    assert out["runtime_missing"].sum() == sum(r["RuntimeSparse"] == "" for r in rows)
    observed = out["runtime"][out["runtime_missing"] == 0]
    assert abs(observed.mean()) < 1e-4 and abs(observed.std() - 1) < 1e-3


def test_categorical_vocabulary_oov_and_missing(movies):
    rows, out, tft_output = movies
    vocab = [v.decode() for v in tft_output.vocabulary_by_name("mpaa")]
    assert UNSEEN not in vocab and "R" in vocab
    ids = out["mpaa"]
    size = len(vocab)
    for r, i in zip(rows, ids, strict=False):
        if r["MPAA"] in vocab:
            assert i == vocab.index(r["MPAA"])
        else:  # unseen values and missing values land in the OOV buckets
            assert size <= i < size + 2
    assert ids[0] >= size  # the unseen value
    assert any(r["MPAA"] == "" for r in rows)


def test_text_tokens_lowercased_padded(movies):
    rows, out, tft_output = movies
    vocab = [v.decode() for v in tft_output.vocabulary_by_name("title")]
    ids = out["title"]
    assert ids.shape == (ROWS, 6) and ids.dtype == np.int64
    for r, row_ids in zip(rows, ids, strict=False):
        tokens = [t.decode() for t in tokenize(tf.constant([r["Title"]]))[0].numpy()][:6]
        assert [vocab[i - 1] for i in row_ids[: len(tokens)]] == tokens
        assert np.all(row_ids[len(tokens) :] == 0)  # padding
        assert all(t == t.lower() for t in tokens)


def test_multi_value_sequence_and_bag(movies):
    rows, out, tft_output = movies
    vocab = [v.decode() for v in tft_output.vocabulary_by_name("cast")]
    for r, row_ids in zip(rows, out["cast"], strict=False):
        names = [n.strip() for n in r["Cast"].split(",") if n.strip()]
        kept = [vocab[i - 1] for i in row_ids if i > 0]
        assert len(kept) == min(len(names), 5)
        assert set(kept) <= set(names)
        # The most frequent names are the ones kept.
        if len(names) > 5:
            ranks = sorted(vocab.index(n) for n in set(names))[:5]
            assert sorted(vocab.index(n) for n in kept) == ranks
    bag_vocab = [v.decode() for v in tft_output.vocabulary_by_name("genres_bag")]
    bag = out["genres_bag"]
    assert bag.shape == (ROWS, 30 + 1)
    for r, counts in zip(rows, bag, strict=False):
        genres = [g.strip() for g in r["GenreBag"].split(",") if g.strip()]
        assert sorted(bag_vocab[i] for i in np.nonzero(counts)[0]) == sorted(genres)


def test_labels_per_head(movies):
    rows, out, tft_output = movies
    assert np.allclose(out["meter_label"], [float(r["Meter"]) for r in rows])
    assert out["meter_label"].dtype == np.float32
    assert np.array_equal(out["oscar_label"], [float(int(r["Oscars"]) > 0) for r in rows])
    classes = ["Drama", "Comedy", "Horror"]
    for r, hot in zip(rows, out["genre_label"], strict=False):
        genres = {g.strip() for g in r["Genre"].split(",")}
        assert list(hot) == [float(c in genres) for c in classes]
    lang_vocab = [v.decode() for v in tft_output.vocabulary_by_name("lang_label")]
    for r, i in zip(rows, out["lang_label"], strict=False):
        assert lang_vocab[i] == r["Language"]


def test_slices(movies):
    rows, out, _ = movies
    assert [s.decode() for s in out["slice_decade"]] == [
        str(int(r["Year"]) // 10 * 10) for r in rows
    ]
    assert [s.decode() for s in out["slice_mpaa"]] == [r["MPAA"] or "missing" for r in rows]


def test_image_decoded_resized_scaled():
    spec = load_spec(DIGITS_FIXTURE_SPEC)
    instances, feature_spec, parsed = digits_examples(60)
    out, _ = run_transform(spec, instances, feature_spec)
    images = out["image"]
    assert images.shape == (60, 16, 16, 1) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0 and images.max() > 0.5
    # Resizing keeps the picture: compare with the raw PNG decoded and resized by hand.
    raw = tf.io.decode_png(instances[0]["image"][0], channels=1)
    ref = tf.image.resize(tf.cast(raw, tf.float32), [16, 16], antialias=True) / 255.0
    assert np.allclose(images[0], ref.numpy(), atol=1e-5)
    assert np.array_equal(out["digit_label"], parsed["digit"].numpy()[:, 0])
    assert np.array_equal(out["odd_label"], parsed["odd"].numpy()[:, 0].astype(np.float32))

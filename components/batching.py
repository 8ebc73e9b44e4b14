"""TensorFlow Serving's server-side batching for a pushed model: `batching_parameters.txt`.

Each registry version gets this file beside its SavedModel, for
`tensorflow_model_server --enable_batching --batching_parameters_file=<version>/batching_parameters.txt`.
Its values are derived by `derive` from a measured curve of serving_default's latency per batch
size (`make bench`, part 3: the movies model on this repository's 2-core reference machine) and
committed as BATCHING below; the bench prints what the rule derives from its latest figures next
to the committed values, so a change in the model or the machine shows.

The rule, after TF Serving's batching guide for CPU-only servers (start from a large batch and a
short timeout, then measure):
- batch_timeout_micros: one example's p50 latency: a lone request waits at most about its own
  compute time again for company, so an idle server's latency at most doubles, while a busy one
  fills batches;
- max_batch_size: among the batches whose p50 stays within LATENCY_FACTOR times one example's
  (so a request's worst case is about 1 + LATENCY_FACTOR times an unbatched answer), the
  smallest within 10% of their best throughput (larger ones only add latency);
- max_enqueued_batches: how many such batches one batch thread clears in QUEUE_BUDGET_MS, so a
  request is turned away rather than queued for longer than that;
- num_batch_threads is left out: TF Serving then uses the serving host's cores (the machine
  that serves is not the one that pushed).
"""

from __future__ import annotations

import math
import os

BATCHING_FILE = "batching_parameters.txt"
QUEUE_BUDGET_MS = 100.0
LATENCY_FACTOR = 4.0  # a batch may take this many times one example's latency
KNEE = 0.9  # max_batch_size: the smallest batch reaching this share of the best throughput

# `derive` on the bench's curve (bench/results/results.json "serving" -> "batching_curve", movies
# model, 2 cores): see bench/results/summary.md, part 3.
BATCHING = {"max_batch_size": 256, "batch_timeout_micros": 1000, "max_enqueued_batches": 30}


def derive(curve: dict) -> dict:
    """{max_batch_size, batch_timeout_micros, max_enqueued_batches} from {batch size: p50
    latency in ms} of serving_default (at least batch size 1 and one larger)."""
    sizes = sorted(int(b) for b in curve)
    if len(sizes) < 2 or sizes[0] != 1:
        raise ValueError(f"a latency curve from batch size 1 up is needed, got sizes {sizes}")
    latency = {b: float(curve[b] if b in curve else curve[str(b)]) for b in sizes}
    within = [b for b in sizes if latency[b] <= LATENCY_FACTOR * latency[1]]
    throughput = {b: b / latency[b] for b in within}
    best = max(throughput.values())
    knee = next(b for b in within if throughput[b] >= KNEE * best)
    return {
        "max_batch_size": knee,
        "batch_timeout_micros": int(round(latency[1] * 1000, -2)) or 100,
        "max_enqueued_batches": max(1, math.floor(QUEUE_BUDGET_MS / latency[knee])),
    }


def batching_text(params: dict) -> str:
    """The file's text: TF Serving's BatchingParameters proto in text format (each field an
    Int64Value wrapper, hence `{ value: N }`)."""
    lines = [
        "# TensorFlow Serving batching (components/batching.py): tensorflow_model_server",
        "# --enable_batching --batching_parameters_file=<this file>",
    ]
    for key in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches"):
        lines.append(f"{key} {{ value: {int(params[key])} }}")
    return "\n".join(lines) + "\n"


def write_batching_file(folder: str, params: dict | None = None) -> str:
    """Writes the file into `folder` (made when missing); returns its path."""
    import tensorflow as tf

    tf.io.gfile.makedirs(folder)
    path = os.path.join(folder, BATCHING_FILE)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(batching_text(params or BATCHING))
    return path

"""Measuring tools: a process-tree RSS sampler, per-component times from ML Metadata, scaled data."""

from __future__ import annotations

import csv
import os
import random
import threading
import time

import psutil


class RssSampler:
    """Samples the resident memory of process `pid` (default: this one) and its children (Beam
    workers) every `interval` seconds, so the peak within any time window can be read afterwards."""

    def __init__(self, pid: int | None = None, interval: float = 0.2):
        self.pid = pid or os.getpid()
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        try:
            me = psutil.Process(self.pid)
            total = me.memory_info().rss
        except psutil.Error:
            return 0
        for child in me.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self):
        while not self._stop.is_set():
            self.samples.append((time.time(), self._rss()))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def peak(self, start: float, end: float) -> int:
        inside = [rss for t, rss in self.samples if start <= t <= end]
        return max(inside) if inside else 0


def component_times(metadata_path: str) -> dict[str, tuple[float, float]]:
    """{component id: (start, end) epoch seconds} of the newest run's executions in MLMD."""
    from ml_metadata.metadata_store import metadata_store
    from tfx.orchestration.metadata import sqlite_metadata_connection_config

    store = metadata_store.MetadataStore(sqlite_metadata_connection_config(metadata_path))
    runs = store.get_contexts_by_type("pipeline_run")
    run = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
    in_run = {e.id for e in store.get_executions_by_context(run.id)}
    times = {}
    for node in store.get_contexts_by_type("node"):
        component = node.name.split(".", 1)[-1]
        for e in store.get_executions_by_context(node.id):
            if e.id in in_run:
                times[component] = (
                    e.create_time_since_epoch / 1000.0,
                    e.last_update_time_since_epoch / 1000.0,
                )
    return times


def scale_movies(src_csv: str, factor: float, out_csv: str, seed: int = 7) -> int:
    """Writes `factor` copies of every row, copies after the first perturbed (new ID, so that
    hash splitting spreads them; Year +-1, Runtime/Reviews jittered, Meter +-3 within 0..100).
    A factor below 1 keeps every (1/factor)-th row. Returns the number of rows written."""
    rng = random.Random(seed)
    os.makedirs(os.path.dirname(out_csv), exist_ok=True)
    with open(src_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if factor < 1:
        rows, factor = rows[:: round(1 / factor)], 1
    factor = int(factor)
    max_id = max(int(r["ID"]) for r in rows)
    n = 0
    with open(out_csv, "w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        for copy in range(factor):
            for r in rows:
                if copy:
                    r = dict(r)
                    r["ID"] = str(int(r["ID"]) + copy * (max_id + 1))
                    if r["Year"]:
                        r["Year"] = str(int(r["Year"]) + rng.choice((-1, 0, 1)))
                    for col in ("Runtime", "Reviews"):
                        if r[col]:
                            r[col] = str(max(1, int(round(int(r[col]) * rng.uniform(0.9, 1.1)))))
                    if r["Meter"]:
                        r["Meter"] = str(min(100, max(0, int(r["Meter"]) + rng.randint(-3, 3))))
                writer.writerow(r)
                n += 1
    return n

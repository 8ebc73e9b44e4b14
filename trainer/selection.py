"""Which epoch's weights each head is served with (`training.selection`).

- joint: one epoch for every head, the best weighted validation loss (Keras' EarlyStopping);
  training stops `early_stopping_patience` epochs after it.
- per_head: each head watches its own primary metric on the validation split (its loss when
  the spec does not report that metric). `early_stopping_patience` epochs after its best, the head
  stops: its own layers go back to their best epoch's values and it weighs 0 in the objective
  (no gradient into the shared layers, no retracing: see MultiHeadModel.stop_heads); the others
  train on. Training ends when every head has stopped (or after `epochs`). Each head is then
  served with the whole network as it was at that head's best epoch: when heads peaked at
  different epochs, the exported model holds one copy of the towers and trunk per distinct best
  epoch (`selected`).
"""

from __future__ import annotations

import logging
import math
import time

import tf_keras as keras

from pipeline.spec import Spec
from preprocessing import HEAD_TYPES

log = logging.getLogger(__name__)


def watched(spec: Spec, head) -> tuple[str, int]:
    """(the validation log key the head is selected on, +1 if higher is better else -1)."""
    prefix = f"val_{head.name}_" if len(spec.outputs) > 1 else "val_"
    metric = HEAD_TYPES[head.type].primary
    if metric in head.metrics:
        return prefix + metric, 1 if HEAD_TYPES[head.type].higher_is_better(metric) else -1
    return prefix + "loss", -1


class PerHeadSelection(keras.callbacks.Callback):
    """Keeps, per head, its best validation epoch and that epoch's weights; stops heads."""

    def __init__(self, spec: Spec, patience: int):
        super().__init__()
        self.spec = spec
        self.patience = patience
        self.watch = {h.name: watched(spec, h) for h in spec.outputs}

    def on_train_begin(self, logs=None):
        self.best = {h: -math.inf for h in self.watch}
        self.best_epoch: dict[str, int] = {}
        self.stopped_at: dict[str, int] = {}
        self.wait = dict.fromkeys(self.watch, 0)
        self.snapshots: dict[int, list] = {}

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        active = [h for h in self.watch if h not in self.stopped_at]
        improved = []
        for h in active:
            key, sign = self.watch[h]
            value = logs.get(key)
            if value is not None and not math.isnan(value) and sign * value > self.best[h]:
                self.best[h] = sign * value
                improved.append(h)
        if improved:
            self.snapshots[epoch] = self.model.get_weights()
        stopping = {}
        for h in active:
            if h in improved:
                self.best_epoch[h], self.wait[h] = epoch, 0
                continue
            self.wait[h] += 1
            if self.wait[h] >= self.patience and h in self.best_epoch:
                stopping[h] = self.snapshots[self.best_epoch[h]]
                self.stopped_at[h] = epoch
                log.warning(
                    "Trainer: head %s stopped after epoch %d (best %s at epoch %d)",
                    h,
                    epoch + 1,
                    self.watch[h][0],
                    self.best_epoch[h] + 1,
                )
        done = len(self.stopped_at) == len(self.watch)
        if stopping:
            self.model.stop_heads(stopping)
        keep = set(self.best_epoch.values())
        self.snapshots = {e: w for e, w in self.snapshots.items() if e in keep}
        if done:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        # A head that never had a finite metric is served as training left it.
        for h in self.watch:
            if h not in self.best_epoch:
                self.best_epoch[h] = -1
        if -1 in self.best_epoch.values():
            self.snapshots[-1] = self.model.get_weights()

    def epochs(self) -> dict[str, int | None]:
        """{head: its best epoch, from 1} (None: never had a finite metric)."""
        return {h: (e + 1 if e >= 0 else None) for h, e in self.best_epoch.items()}


def selected(model, selection: PerHeadSelection, spec: Spec, info, build) -> keras.Model:
    """The model to export: every head with the weights of its best epoch. One epoch for every
    head: `model` itself with those weights. Otherwise a model made of one copy of the network
    per distinct epoch (`build(spec, info, name)`), each head read from its epoch's copy."""
    by_epoch = selection.best_epoch
    distinct = sorted(set(by_epoch.values()))
    if len(distinct) == 1:
        model.set_weights(selection.snapshots[distinct[0]])
        return model
    copies = {}
    for e in distinct:
        copy = build(spec, info, name=f"{spec.name}_epoch_{e + 1 if e >= 0 else 'last'}")
        copy.set_weights(selection.snapshots[e])
        copies[e] = copy(model.input)
    # Named after its head, as in the trained model (Keras names metrics after output layers).
    outputs = {
        h.name: keras.layers.Activation("linear", dtype="float32", name=h.name)(
            copies[by_epoch[h.name]][h.name]
        )
        for h in spec.outputs
    }
    return keras.Model(model.input, outputs, name=spec.name)


class EpochLine(keras.callbacks.Callback):
    """One line per epoch on the terminal (Keras' own epoch lines go to the run's log): the
    epoch, its time, and each head's watched validation metric, `*` when it is the head's best
    so far, e.g. `[Trainer] epoch 3/10 (4.2 s): val_meter_mae 19.8100*, val_oscar_auc 0.8712`."""

    def __init__(self, spec: Spec, epochs: int):
        super().__init__()
        self.epochs = epochs
        self.watch = {h.name: watched(spec, h) for h in spec.outputs}
        self.best = dict.fromkeys(self.watch, -math.inf)

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        parts = []
        for head, (key, sign) in self.watch.items():
            value = logs.get(key)
            if value is None or math.isnan(value):
                continue
            mark = ""
            if sign * value > self.best[head]:
                self.best[head], mark = sign * value, "*"
            parts.append(f"{key} {value:.4f}{mark}")
        seconds = time.time() - self.started
        print(
            f"[Trainer] epoch {epoch + 1}/{self.epochs} ({seconds:.1f} s): " + ", ".join(parts),
            flush=True,
        )


class LogBalance(keras.callbacks.Callback):
    """`<head>_balance` in each epoch's logs (history, TensorBoard): the head's weight in the
    objective; the balancer sees the epoch's logs first (DWA updates on them)."""

    def __init__(self, spec: Spec, balancer):
        super().__init__()
        self.balancer = balancer
        several = len(spec.outputs) > 1
        self.prefix = (lambda h: f"{h}_") if several else (lambda h: "")

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        self.balancer.on_epoch_end(logs, self.prefix)
        for h, value in self.balancer.weights().items():
            logs[f"{h}_balance"] = value

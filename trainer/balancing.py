"""How the heads' losses become the one loss the shared layers learn from
(`training.loss_balancing`).

Every mode multiplies with the heads' `loss_weight`s, weighs a stopped head's term 0 (see
trainer/selection.py; `active` holds each head's 1 or 0, variables read by the traced step, so
stopping a head retraces nothing), works in a replica context under
MirroredStrategy (the caller scales the result by the replica count, as Keras does) and keeps its
state in variables created under the strategy's scope:

- static: the spec's loss weights, fixed.
- uncertainty: each head's loss divided by a learned variance, plus its log (Kendall, Gal and
  Cipolla 2018, "Multi-task learning using uncertainty to weigh losses"): at the optimum a head's
  weight is 1 / its loss.
- dwa: Dynamic Weight Average (Liu, Johns and Davison 2019): after each epoch, a head whose
  training loss fell more slowly over the last two epochs weighs more (softmax of the ratios,
  temperature 2, the weights sum to the number of heads).
- famo: Fast Adaptive Multitask Optimization (Liu et al. 2023): the loss is the weighted sum of
  log-losses, the weights a softmax of logits that, after every step, move towards the heads whose
  loss fell least in that step (one more forward pass per step; the logits' update is applied
  one step late, see Famo).

`weights()` is what each head weighs now, logged every epoch (`<head>_balance` in the history
and TensorBoard).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

EPSILON = 1e-8


class Balancer:
    name = ""

    def __init__(self, static: dict[str, float], learning_rate: float = 0.001):
        self.heads = list(static)
        self.static = dict(static)

    def trainable_variables(self) -> list:
        return []

    def combine(self, losses: dict, active: dict | None = None) -> tf.Tensor:
        """The training objective from {head: loss}; `active` {head: 1 training, 0 stopped}
        (None: every head trains)."""
        raise NotImplementedError

    def head_variables(self, head: str) -> list:
        """This balancer's variables only `head`'s term reads (kept when the head stops)."""
        return []

    def gradients(self) -> list:
        """(gradient, variable) pairs the training step adds to the model's own."""
        return []

    def after_step(self, model, x, y, w, losses: dict) -> None:
        """Called in the training step after the optimizer's update (losses: every head's,
        before it; model.head_active: which heads train)."""

    def on_epoch_end(self, logs: dict, prefix) -> None:
        """Called after each epoch with its logs; `prefix(head)` names the head's log keys."""

    def weights(self) -> dict:
        """{head: its current weight in the objective} (for logs)."""
        return dict(self.static)


def _on(active, head):
    return 1.0 if active is None else active[head]


class Static(Balancer):
    name = "static"

    def combine(self, losses, active=None):
        return tf.add_n([_on(active, h) * self.static[h] * v for h, v in losses.items()])


class Uncertainty(Balancer):
    name = "uncertainty"

    def __init__(self, static, learning_rate=0.001):
        super().__init__(static)
        # s = log(sigma^2), one per head, trained with the model's own optimizer.
        self.log_var = {h: tf.Variable(0.0, name=f"{h}_log_variance") for h in self.heads}

    def trainable_variables(self):
        return list(self.log_var.values())

    def head_variables(self, head):
        return [self.log_var[head]]

    def combine(self, losses, active=None):
        terms = [
            _on(active, h) * (self.static[h] * tf.exp(-self.log_var[h]) * v + self.log_var[h])
            for h, v in losses.items()
        ]
        return tf.add_n(terms)

    def weights(self):
        return {h: self.static[h] * float(np.exp(-self.log_var[h].numpy())) for h in self.heads}


class DynamicWeightAverage(Balancer):
    name = "dwa"
    temperature = 2.0

    def __init__(self, static, learning_rate=0.001):
        super().__init__(static)
        self.lam = {h: tf.Variable(1.0, trainable=False, name=f"{h}_dwa") for h in self.heads}
        self.history: list[dict] = []

    def combine(self, losses, active=None):
        return tf.add_n(
            [_on(active, h) * self.static[h] * self.lam[h] * v for h, v in losses.items()]
        )

    def on_epoch_end(self, logs, prefix):
        self.history.append({h: float(logs[f"{prefix(h)}loss"]) for h in self.heads})
        if len(self.history) < 2:
            return
        before, last = self.history[-2], self.history[-1]
        ratio = np.array([last[h] / max(before[h], EPSILON) for h in self.heads])
        e = np.exp((ratio - ratio.max()) / self.temperature)
        for h, value in zip(self.heads, len(self.heads) * e / e.sum(), strict=True):
            self.lam[h].assign(float(value))

    def weights(self):
        return {h: self.static[h] * float(self.lam[h].numpy()) for h in self.heads}


class Famo(Balancer):
    name = "famo"
    logit_learning_rate = 0.025  # the paper's defaults
    logit_decay = 0.001

    def __init__(self, static, learning_rate=0.001):
        super().__init__(static)
        k = len(self.heads)
        # The logits are `scale * theta`, theta updated by the model's own Adam (so in the same
        # cross-replica reduction as every other gradient: a second optimizer's reduction in
        # the same step can pair up with the wrong one across replicas). Adam's step is about
        # its learning rate whatever the gradient's scale, so the logits move by about the
        # paper's 0.025 per step.
        self.scale = self.logit_learning_rate / learning_rate
        self.theta = tf.Variable(tf.zeros([k]), name="famo_logits")
        # Each replica's logit gradient from its last step, applied at the next one (one step
        # late: it needs the losses after the update, when this step's reduction is done).
        self.pending = tf.Variable(
            tf.zeros([k]),
            trainable=False,
            synchronization=tf.VariableSynchronization.ON_READ,
            aggregation=tf.VariableAggregation.MEAN,
            name="famo_pending",
        )

    @property
    def logits(self):
        return self.scale * self.theta

    def _z(self, active):
        """softmax of the logits over the heads still training (0 for the others)."""
        if active is None:
            return tf.stop_gradient(tf.nn.softmax(self.logits))
        mask = tf.stack([active[h] > 0.5 for h in self.heads])
        logits = tf.where(mask, self.logits, tf.fill(tf.shape(self.theta), -1e9))
        return tf.stop_gradient(tf.nn.softmax(logits))

    def combine(self, losses, active=None):
        z = self._z(active)
        d = {h: v + EPSILON for h, v in losses.items()}
        c = tf.stop_gradient(tf.add_n([z[self.heads.index(h)] / v for h, v in d.items()]))
        terms = [self.static[h] * z[self.heads.index(h)] * tf.math.log(v) / c for h, v in d.items()]
        return tf.add_n(terms)

    def gradients(self):
        """theta's gradient for this step's update: the replicas' pending ones (the optimizer
        sums over replicas: divided by their count, a mean) and the paper's decay."""
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        g = self.pending.value() + self.logit_decay * self.logits
        return [(g / replicas, self.theta)]

    def after_step(self, model, x, y, w, losses):
        """Each head's log-loss decrease on this batch, through the softmax's Jacobian: the
        logits' gradient, kept for the next step."""
        after = model.head_losses(y, model(x, training=False), w)
        delta = tf.stack(
            [tf.math.log(losses[h] + EPSILON) - tf.math.log(after[h] + EPSILON) for h in self.heads]
        )
        z = self._z(model.head_active)
        self.pending.assign(tf.stop_gradient(z * (delta - tf.reduce_sum(z * delta))))

    def weights(self):
        z = tf.nn.softmax(self.logits).numpy()
        return {h: self.static[h] * float(z[i]) for i, h in enumerate(self.heads)}


BALANCERS = {b.name: b for b in (Static, Uncertainty, DynamicWeightAverage, Famo)}


def make_balancer(name: str, static: dict[str, float], learning_rate: float = 0.001) -> Balancer:
    """The balancer `name` for heads {name: loss_weight} and the model's learning rate; call
    under the strategy's scope."""
    return BALANCERS[name](static, learning_rate)

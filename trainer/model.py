"""The multi-input / multi-output Keras model, built from the spec (nothing per dataset).

A named Input per transformed feature -> one tower per input (its modality's `tower`) ->
missing-modality handling -> fusion (concatenate, gated or average) -> shared trunk -> one named head per
output, each with its own loss, loss weight and metrics.

Its training step (MultiHeadModel) combines the heads' losses by the spec's loss balancing
(trainer/balancing.py) and leaves out every head that has stopped (trainer/selection.py): such a
head's term in the objective is weighed 0 (a variable, so stopping a head retraces nothing), so it
sends no gradient into the shared layers, and its own layers keep their values (their optimizer
state is reset, so a zero gradient moves them by exactly 0). Validation and the reported `loss` /
`<head>_loss` stay the spec's static weighted sum, whatever the balancing, so they compare across
modes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import tensorflow as tf
import tf_keras as keras
from tf_keras.src.engine.compile_utils import match_dtype_and_rank
from tf_keras.src.losses import LossFunctionWrapper
from tf_keras.src.utils.losses_utils import scale_loss_for_distribution

from pipeline.spec import Spec
from preprocessing import HEAD_TYPES, MODALITIES
from trainer.layers import AverageFusion, GatedFusion, MissingModality, ReadsHead


@dataclass
class FeatureInfo:
    """What the model needs to know of the Transform output (and of the training labels)."""

    feature_spec: dict
    vocabularies: dict = field(default_factory=dict)  # name -> list of bytes
    # head -> what its head type learnt from the training labels (a scale, class priors)
    head_stats: dict = field(default_factory=dict)
    # head -> the fraction of training examples with its label (the loss weighs it up, see data.py)
    labelled_fraction: dict = field(default_factory=dict)

    def vocabulary(self, name: str) -> list:
        return self.vocabularies[name]

    def vocab_size(self, name: str) -> int:
        return len(self.vocabularies[name])

    @classmethod
    def from_transform_output(cls, tft_output, labels=None, spec=None) -> FeatureInfo:
        """`labels` ({head: training labels}) give each head type what it learns from them."""
        from trainer.data import head_stats

        vocabularies = {n: tft_output.vocabulary_by_name(n) for n in _vocab_names(tft_output)}
        info = cls(tft_output.transformed_feature_spec(), vocabularies)
        if labels is not None:
            info.head_stats = head_stats(labels, spec, info)
            info.labelled_fraction = labels.labelled_fraction()
        return info


def _vocab_names(tft_output) -> list[str]:
    import tensorflow as tf

    assets = tf.io.gfile.join(tft_output.transform_savedmodel_dir, "assets")
    if not tf.io.gfile.exists(assets):
        return []
    return sorted(tf.io.gfile.listdir(assets))


def build_towers(spec: Spec, info: FeatureInfo):
    """Returns (inputs {feature: Input}, [tower outputs after missing-modality handling])."""
    inputs, towers = {}, []
    rate = spec.model["modality_dropout"]
    for item in spec.inputs:
        modality = MODALITIES[item.modality]
        own = modality.keras_inputs(item, info)
        inputs.update(own)
        tower, present = modality.tower(own, item, info)
        towers.append(MissingModality(rate, name=f"{item.name}_or_missing")([tower, present]))
    return inputs, towers


class MultiHeadModel(keras.Model):
    """The functional model with a training step of its own (see the module's doc); until
    `configure` is called it trains as a plain Keras model would."""

    balancer = None
    kept = None  # {id(variable): (variable, value)} of the stopped heads' own variables

    def configure(self, spec: Spec, info: FeatureInfo, balancer) -> None:
        """After compile, under the strategy's scope."""
        losses = {}
        for h in spec.outputs:
            loss = HEAD_TYPES[h.type].keras_loss(h, info)
            if not isinstance(loss, keras.losses.Loss):
                loss = LossFunctionWrapper(loss, name=f"{h.name}_loss")
            # As Keras' own loss container: reduced over the replica's batch, then scaled by
            # the replica count (scale_loss_for_distribution).
            loss._allow_sum_over_batch_size = True
            losses[h.name] = loss
        # Plain attributes, not tracked by Keras: none of this belongs in a checkpoint or export.
        for name, value in (
            ("balancer", balancer),
            ("stopped", set()),
            ("kept", {}),
            ("_loss_objects", losses),
            ("head_variables", {h.name: head_variables(self, h.name) for h in spec.outputs}),
            # 1 while the head trains, 0 once stopped: read by the traced training step.
            (
                "head_active",
                {
                    h.name: tf.Variable(1.0, trainable=False, name=f"{h.name}_active")
                    for h in spec.outputs
                },
            ),
        ):
            object.__setattr__(self, name, value)

    def head_losses(self, y, y_pred, w) -> dict:
        """{head: its loss on the batch}, as Keras' compiled loss computes it (unweighted)."""
        out = {}
        for name, loss in self._loss_objects.items():
            yt, yp, sw = match_dtype_and_rank(y[name], y_pred[name], w.get(name))
            out[name] = loss(yt, yp, sample_weight=sw)
        return out

    def objective(self, y, y_pred, w):
        """(the balanced loss, a stopped head's term weighed 0; {head: loss} of every head)."""
        losses = self.head_losses(y, y_pred, w)
        total = self.balancer.combine(losses, self.head_active)
        if self.losses:
            total += tf.add_n(self.losses)
        return total, losses

    def training_variables(self) -> list:
        return self.trainable_variables + self.balancer.trainable_variables()

    def train_step(self, data):
        if self.balancer is None:
            return super().train_step(data)
        x, y, w = data
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            total, losses = self.objective(y, y_pred, w)
            scaled = scale_loss_for_distribution(total)
        grads = self.optimizer.compute_gradients(scaled, self.training_variables(), tape)
        self.optimizer.apply_gradients(grads + self.balancer.gradients())
        self.balancer.after_step(self, x, y, w, losses)
        self.compiled_loss(y, y_pred, w, regularization_losses=self.losses)  # the logged losses
        return self.compute_metrics(x, y, y_pred, w)

    def stop_heads(self, weights: dict) -> None:
        """From the next step on, each head of `weights` ({head: a get_weights() of this model})
        weighs 0 in the objective and its own layers (and its balancer's variables) keep their
        values: set to those of `weights`, with their optimizer state reset."""
        index = {id(v): i for i, v in enumerate(self.weights)}
        for head, values in weights.items():
            own = self.head_variables[head]
            for v in own:
                v.assign(values[index[id(v)]])
                self.kept[id(v)] = (v, values[index[id(v)]])
            reset_optimizer_state(self.optimizer, own + self.balancer.head_variables(head))
            self.head_active[head].assign(0.0)
            self.stopped.add(head)

    def restore_kept(self) -> None:
        """The stopped heads' own variables back to the values they stopped with: the weights'
        moving average (trainer/averaging.py) still updates them, off by a rounding error."""
        for v, value in (self.kept or {}).values():
            v.assign(value)


def reset_optimizer_state(optimizer, variables) -> None:
    """Zeroes Adam's moments of `variables` (if it has made them): with a zero gradient from then
    on, Adam moves them by exactly 0 (its step is the first moment over the second's root)."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)  # under a LossScaleOptimizer
    if not getattr(inner, "_built", False):
        return
    if not hasattr(inner, "_momentums"):
        raise TypeError(f"stopping a head needs Adam's moments; {type(inner).__name__} has none")
    moments = [inner._momentums, inner._velocities]
    if getattr(inner, "amsgrad", False):
        moments.append(inner._velocity_hats)
    for v in variables:
        i = inner._index_dict[inner._var_key(v)]
        for slots in moments:
            slots[i].assign(tf.zeros_like(slots[i]))


def head_variables(model: keras.Model, head: str) -> list:
    """The variables of the layers only `head`'s output depends on (its hidden and output
    layers): from its output back to the first layer another head's output also reads."""
    shared = set()
    for name, out in model.output.items():
        if name != head:
            shared |= {id(layer) for layer in _layers_behind(out)}
    own = [layer for layer in _layers_behind(model.output[head]) if id(layer) not in shared]
    return [v for layer in own for v in layer.trainable_weights]


def _layers_behind(tensor) -> list:
    seen, stack, out = set(), [tensor], []
    while stack:
        t = stack.pop()
        layer, node_index, _ = t._keras_history
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        out.append(layer)
        if isinstance(layer, ReadsHead):  # another head's output: that head's layers
            continue
        stack.extend(tf.nest.flatten(layer._inbound_nodes[node_index].keras_inputs))
    return out


def model_summary(model: keras.Model, spec: Spec) -> dict:
    """The trained network's size for the run report: parameters in all, and per input its
    tower's output width and parameters (the layers from the input to its tower's output)."""
    towers = {}
    for item in spec.inputs:
        layer = model.get_layer(f"{item.name}_or_missing")
        tower = layer.input[0]
        towers[item.name] = {
            "modality": item.modality,
            "width": int(tower.shape[-1]),
            "parameters": int(keras.Model(model.inputs, tower).count_params()),
        }
    return {"parameters": int(model.count_params()), "towers": towers}


def fuse_and_trunk(towers: list, spec: Spec, prefix: str = ""):
    """The model section's fusion of `towers`, then its trunk; layer names start with `prefix`
    (a routed head's own branch: `<head>_fusion`, `<head>_trunk_0`, ...)."""
    fusion, units = spec.model["fusion"], spec.model["fusion_units"]
    if fusion == "gated" and len(towers) > 1:
        x = GatedFusion(units, name=f"{prefix}fusion")(towers)
    elif fusion == "average" and len(towers) > 1:
        x = AverageFusion(units, name=f"{prefix}fusion")(towers)
    elif len(towers) > 1:
        x = keras.layers.Concatenate(name=f"{prefix}fusion")(towers)
    else:
        x = towers[0]
    for i, units in enumerate(spec.model["trunk_units"]):
        x = keras.layers.Dense(units, activation="relu", name=f"{prefix}trunk_{i}")(x)
        if spec.model["dropout"]:
            x = keras.layers.Dropout(spec.model["dropout"], name=f"{prefix}trunk_dropout_{i}")(x)
    return x


def build_model(spec: Spec, info: FeatureInfo, name: str | None = None) -> keras.Model:
    """The uncompiled model; outputs are a dict keyed by head name. A head with `inputs` (routed)
    reads only those inputs' towers, through a fusion and trunk of its own; the others share one
    trunk over every tower (built only when some head reads it)."""
    inputs, towers = build_towers(spec, info)
    by_name = dict(zip((i.name for i in spec.inputs), towers, strict=True))
    shared = None
    if any(not h.inputs for h in spec.outputs):
        shared = fuse_and_trunk(towers, spec)
    outputs = {}
    for head in dependency_order(spec.outputs):
        if head.inputs:
            h = fuse_and_trunk([by_name[n] for n in head.inputs], spec, prefix=f"{head.name}_")
        else:
            h = shared
        if head.depends_on:  # the named heads' outputs
            stop = head.dependency_gradient == "stop"
            read = [
                ReadsHead(stop, name=f"{head.name}_reads_{d}")(outputs[d]) for d in head.depends_on
            ]
            h = keras.layers.Concatenate(name=f"{head.name}_with_heads")([h, *read])
        if head.hidden_units:
            h = keras.layers.Dense(
                head.hidden_units, activation="relu", name=f"{head.name}_hidden"
            )(h)
        outputs[head.name] = HEAD_TYPES[head.type].build_output(h, head, info)
    outputs = {h.name: outputs[h.name] for h in spec.outputs}
    return MultiHeadModel(inputs=inputs, outputs=outputs, name=name or spec.name)


def dependency_order(heads) -> list:
    """The heads with each after the heads it depends on (the spec refuses cycles)."""
    done, order = set(), []
    pending = list(heads)
    while pending:
        ready = [h for h in pending if set(h.depends_on) <= done]
        for h in ready:
            order.append(h)
            done.add(h.name)
        pending = [h for h in pending if h.name not in done]
        if not ready:
            raise ValueError(f"a dependency cycle among {[h.name for h in pending]}")
    return order


def compile_model(model: keras.Model, spec: Spec, info: FeatureInfo) -> keras.Model:
    """Per-head losses combined with the spec's loss weights; per-head metrics.

    Label masks and class weights reach the losses as per-head sample weights (trainer.data).
    The metrics are weighted metrics, so an example without a head's label counts in none of
    that head's metrics; `model.evaluate` on a dataset with weights="mask" gives them unweighted
    by class.
    """
    heads = {h.name: (HEAD_TYPES[h.type], h) for h in spec.outputs}
    model.compile(
        optimizer=keras.optimizers.Adam(spec.training["learning_rate"]),
        loss={name: t.keras_loss(h, info) for name, (t, h) in heads.items()},
        loss_weights={name: h.loss_weight for name, (_, h) in heads.items()},
        weighted_metrics={name: t.keras_metrics(h, info) for name, (t, h) in heads.items()},
    )
    return model

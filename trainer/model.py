"""The multi-input / multi-output Keras model, built from the spec (nothing per dataset).

A named Input per transformed feature -> one tower per input (its modality's `tower`) ->
missing-modality handling -> fusion (concatenate or gated) -> shared trunk -> one named head per
output, each with its own loss, loss weight and metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import tf_keras as keras

from pipeline.spec import Spec
from preprocessing import HEAD_TYPES, MODALITIES
from trainer.layers import GatedFusion, MissingModality


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


def build_model(spec: Spec, info: FeatureInfo) -> keras.Model:
    """The uncompiled model; outputs are a dict keyed by head name."""
    inputs, towers = build_towers(spec, info)
    if spec.model["fusion"] == "gated" and len(towers) > 1:
        x = GatedFusion(spec.model["fusion_units"], name="fusion")(towers)
    elif len(towers) > 1:
        x = keras.layers.Concatenate(name="fusion")(towers)
    else:
        x = towers[0]
    for i, units in enumerate(spec.model["trunk_units"]):
        x = keras.layers.Dense(units, activation="relu", name=f"trunk_{i}")(x)
        if spec.model["dropout"]:
            x = keras.layers.Dropout(spec.model["dropout"], name=f"trunk_dropout_{i}")(x)
    outputs = {}
    for head in spec.outputs:
        h = x
        if head.hidden_units:
            h = keras.layers.Dense(
                head.hidden_units, activation="relu", name=f"{head.name}_hidden"
            )(h)
        outputs[head.name] = HEAD_TYPES[head.type].build_output(h, head, info)
    return keras.Model(inputs=inputs, outputs=outputs, name=spec.name)


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

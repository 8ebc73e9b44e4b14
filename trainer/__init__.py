"""Trainer: the multi-input / multi-output Keras model (see issue #3)."""

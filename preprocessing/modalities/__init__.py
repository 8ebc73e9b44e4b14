"""One module per input modality; each registers its `Modality` with `MODALITIES.register`."""

"""Kubeflow Pipelines runner (see issue #5)."""

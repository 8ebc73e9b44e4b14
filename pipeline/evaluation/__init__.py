"""Evaluation: the Evaluator's configuration from the spec (eval_config), the custom TFMA
metrics (multilabel_metrics), an evaluation as one typed summary (summary) and the reports."""

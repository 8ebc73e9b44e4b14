"""Custom TFX components of the pipeline."""


def __getattr__(name: str):
    # `components.RunReport` is the run report's artifact class by the path its type name gives
    # (components/report.py): on Kubeflow, TFX imports a custom artifact type's class from its
    # schema title, which the KFP compiler allows only as `<package>.<Class>`. Lazy, so that
    # importing `components` (the registry's CLI, Airflow's DAG file) loads no TensorFlow.
    if name == "RunReport":
        from components.report import RunReportArtifact

        return RunReportArtifact
    raise AttributeError(f"module 'components' has no attribute {name!r}")

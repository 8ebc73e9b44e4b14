"""Packaging for mimo: a TFX pipeline for multi-input / multi-output Keras models.

Install through the constraints file so every environment gets the same stack:
    pip install -c constraints.txt -e '.[dev]'
"""

from setuptools import find_packages, setup

setup(
    name="mimo-tfx",
    version="0.1.0",
    description="End-to-end TFX pipeline for multi-input / multi-output Keras models",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.11",
    packages=find_packages(
        include=["pipeline*", "components*", "preprocessing*", "trainer*", "kubeflow*"]
    ),
    include_package_data=True,
    install_requires=[
        "tfx==1.16.0",
        "tensorflow==2.16.2",
        "tf-keras==2.16.0",
        "tensorflow-transform==1.16.0",
        "tensorflow-decision-forests==1.9.2",  # the gradient-boosted baseline (built for TF 2.16.2)
        "apache-beam==2.59.0",
        "numpy==1.26.4",
        "protobuf==3.20.3",
        "pyyaml>=6",
        "croniter",
        "pillow",
    ],
    extras_require={
        "kubeflow": ["kfp==2.5.0"],
        "airflow": ["apache-airflow==2.10.3", "psycopg2-binary==2.9.10"],  # PostgreSQL metadata
        "registry": ["mlflow==2.22.1"],
        "dev": ["pytest", "pytest-xdist", "ruff"],
    },
    entry_points={"console_scripts": ["mimo=pipeline.cli:main"]},
)

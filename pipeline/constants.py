"""Names of artifact custom properties the pipeline writes and reads (as TFX's own
`components/evaluator/constants.py` names the Evaluator's)."""

# ModelBlessing (set by TFX's Evaluator)
BLESSED = "blessed"  # 1 when every gate passed
BASELINE_MODEL = "baseline_model"  # the URI of the model the candidate was compared with
# ModelBlessing (set by our Evaluator executor, components/baseline.py)
BASELINE_VERSION = "baseline_version"  # the registry version of that model

# PushedModel (set by the RegistryPusher)
PUSHED = "pushed"  # 1 when this run published a new version
PUSHED_VERSION = "pushed_version"  # the registry version (new, or the one it already was)
PUSHED_DESTINATION = "pushed_destination"  # the version's directory
MLFLOW_VERSION = "mlflow_version"  # the MLflow model version, when registered there
PUSHED_FILE = "pushed.json"  # the same facts as a file in the artifact

# Examples (set by ExampleGen)
SPAN = "span"
VERSION = "version"
INPUT_FINGERPRINT = "input_fingerprint"

# Trainer: the training report (per-head metrics next to trivial baselines) in its model_run
TRAINING_REPORT_FILE = "metrics.json"
# Trainer: in the SavedModel (TF's folder for extra files), the Tuner's values it was trained with
HYPERPARAMETERS_FILE = "assets.extra/hyperparameters.json"
REPORT_FILE = "report.html"  # the run report (pipeline/evaluation/html_report.py)

# CSV cells that mean "no value" unless the spec says otherwise (data.na_values), as R, pandas,
# SQL exports and spreadsheets write them. `?` and `.` are left out on purpose (they are values in
# some data sets); a spec adds them with data.na_values_extra. An empty cell is always missing.
DEFAULT_NA_VALUES = ("", "NA", "N/A", "NaN", "nan", "null", "NULL", "None")

# The rival trained beside the network (evaluation.baselines: gbdt) and its comparison
BOOSTED_TRAINER = "BoostedTrainer"  # its Trainer's node id (trainer.gbdt.run_fn)
BOOSTED_EVALUATOR = "BoostedEvaluator"  # the candidate evaluated with it as TFMA's baseline

"""The trigger-word pipeline's part of the shared stages (components/tasks/__init__.py): its
data checks and split rule (data.py), search space and training (fitting.py), event-level
evaluation and registry gate (scoring.py), each adapting the audio domain code
(components/audio/) to a stage. Split three ways so that a stage's DVC deps name only the
code that decides its outputs."""
from components.tasks import lazy_hooks

__getattr__ = lazy_hooks(__name__, {
    "data": ("ID_COLUMN", "RAW_DIR", "SPLITS", "assign_splits", "describe_split", "generated_tables", "raw_tables"),
    "fitting": ("MODEL_KEYS", "SCORE", "TRAIN_KEYS", "TRIAL_CODE", "build_model", "fit", "fit_trial", "save_model",
                "search_space", "study_prefix", "train_config", "train_summary", "trial_identity"),
    "scoring": ("EVALUATED_FILE", "decide", "evaluate", "gate_figures", "load_evaluated", "log_model",
                "registered_name", "version_tags"),
})

"""The trigger-word pipeline's part of the shared stages (components/tasks/__init__.py): its
data checks and split rule (data.py), search space and training (fitting.py), event-level
evaluation and registry gate (scoring.py), each adapting the audio domain code
(components/audio/) to a stage. Split three ways so that a stage's DVC deps name only the
code that decides its outputs."""
from components.tasks.trigger_word.data import (ID_COLUMN, RAW_DIR, SPLITS, assign_splits, describe_split,
                                                generated_tables, raw_tables)
from components.tasks.trigger_word.fitting import (MODEL_KEYS, SCORE, TRAIN_KEYS, TRIAL_CODE, build_model, fit,
                                                   fit_trial, save_model, search_space, study_prefix, train_config,
                                                   train_summary, trial_identity)
from components.tasks.trigger_word.scoring import (EVALUATED_FILE, decide, evaluate, gate_figures, load_evaluated,
                                                   log_model, registered_name, version_tags)

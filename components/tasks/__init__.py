"""The pipelines, and what each one plugs into the shared stages.

The stages validate, split, tune, train, evaluate and register are the same code for every
pipeline (DESIGN §3). What differs is a pipeline's *task*: one package here per pipeline
that adapts its domain code (components/audio/, components/vision/) to the stages. A
task is imported only when its pipeline runs, and provides:

  validate   RAW_DIR; raw_tables(p, raw_dir, workers), generated_tables(p, data_dir, workers)
             -> the tables of per-file facts and the checks each must pass
  split      ID_COLUMN, SPLITS; assign_splits(manifest, p) -> split name per row;
             describe_split(rows) -> that split's figures
  gate_data  make_gate_data(p, out_dir) -> figures of the fixed gate set it writes into out_dir
             (from the section's gate seed and sizes, never the training seed or clip counts)
  tune       TRIAL_CODE, MODEL_KEYS, TRAIN_KEYS, SCORE; search_space(space), study_prefix(p),
             trial_identity(p), fit_trial(p, config, data_dir, train_ids, val_ids, on_epoch)
  train      fit(p, data_dir, split_dir, tuned, on_epoch) -> (model, TrainResult), save_model(model, path),
             train_summary(model, best_epoch_metrics) -> figures for metrics.json
  evaluate   EVALUATED_FILE; evaluate(p, data_dir, split_dir, model_path, evaluated_out, report_dir)
             -> (headline figures, full metrics)
  register   registered_name(p), load_evaluated(path_or_uri), gate_figures(model, p, gate_dir) -> figures
             (JSON; gate_hash among them), decide(challenger, champion | None, p) -> components.gate.GateDecision,
             log_model(path), version_tags(p)
"""
from __future__ import annotations

import importlib
from types import ModuleType

PIPELINES = {"trigger-word": "trigger_word", "day-night": "day_night"}  # CLI name -> params section, stage prefix


# Where each hook lives in a task package (the stages' whole interface, as listed above).
HOOKS = {
    "data": ("RAW_DIR", "raw_tables", "generated_tables", "ID_COLUMN", "SPLITS", "assign_splits", "describe_split",
             "make_gate_data"),
    "fitting": ("MODEL_KEYS", "TRAIN_KEYS", "SCORE", "TRIAL_CODE", "search_space", "study_prefix", "trial_identity",
                "fit_trial", "fit", "save_model", "train_summary"),
    "scoring": ("EVALUATED_FILE", "evaluate", "registered_name", "load_evaluated", "gate_figures", "decide",
                "log_model", "version_tags"),
}


def lazy_hooks(package: str):
    """A task package's module `__getattr__`: each hook is imported from its module (HOOKS)
    on first use, so the validate stage does not pay for torch, which only fitting needs."""
    owner = {name: module for module, names in HOOKS.items() for name in names}

    def __getattr__(name: str):
        if name not in owner:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{owner[name]}"), name)
    return __getattr__


def section(pipeline: str) -> str:
    return PIPELINES[pipeline]


def load(pipeline: str) -> ModuleType:
    """The pipeline's task package (imported now, with its domain's dependencies)."""
    return importlib.import_module(f"components.tasks.{section(pipeline)}")


def params_of(params, pipeline: str):
    """The pipeline's section of the validated params."""
    return getattr(params, section(pipeline))

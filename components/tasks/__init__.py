"""The pipelines, and the one interface through which the shared stages reach each of them.

The stages generate, validate, split, gate_data, tune, train, evaluate and register are the same code
for every pipeline (DESIGN §3). What differs is a pipeline's *task*: one `Task` subclass
per pipeline, in components/tasks/<section>/__init__.py, that adapts its domain code
(components/audio/, components/vision/, ...) to the stages. `Task` below is the whole
interface: every attribute and method a shared stage may call, typed and documented, with
the stage that calls it. Reading it shows what each stage needs; reading a pipeline's
subclass shows how that pipeline answers.

A subclass's methods delegate to the package's generate.py (generate), data.py (validate,
split, gate_data), fitting.py (tune, train) and scoring.py (evaluate, register), importing them inside the
method: so a stage imports only what it runs (validate never pays for torch), and a
stage's DVC deps name only the module whose code decides its outputs.

A stage a pipeline lacks (it has no such dvc.yaml stage) keeps the base method, which says
so (MissingStage). tests/test_task_contract.py runs every registered task through the
same checks on tiny data.

Adding a pipeline: a package components/tasks/<section>/ with its Task subclass, one entry
in PIPELINES, its params section (components/config.py, params.yaml) and its dvc.yaml
stages `<section>-<stage>`.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol

if TYPE_CHECKING:  # types only: the stages import their own heavy dependencies
    import pandas as pd

    from components.gate import GateDecision
    from components.validate import Table

# CLI name -> params section, which is also the dvc.yaml stage prefix and the task package's name
PIPELINES = {"trigger-word": "trigger_word", "day-night": "day_night", "face": "face",
             "style-transfer": "style_transfer"}

OnEpoch = Callable[[int, dict], None]  # (epoch from 1, that epoch's figures: train_loss, val_loss, score, lr, epoch_s)


class MissingStage(NotImplementedError):
    """A stage called a hook its pipeline does not have (no such stage in dvc.yaml)."""


class FitResult(Protocol):
    """What `Task.fit` returns beside the model (audio and vision TrainResult both are)."""
    history: list[dict]  # one figures dict per epoch, as passed to on_epoch
    best_epoch: int  # 1-based; the model holds this epoch's weights
    stop_reason: str  # "max_epochs" | "early_stopping"
    seconds: float
    threads: int  # the model is reproducible for this thread count


class Task:
    """A pipeline as the shared stages see it. `p` is always the pipeline's validated params
    section (components/config.py), never a raw dict. Subclasses set the class attributes and
    override the methods of every stage their pipeline has."""

    name: ClassVar[str]  # the CLI name, e.g. "trigger-word"
    section: ClassVar[str]  # params section and dvc.yaml stage prefix, e.g. "trigger_word"

    # --- generate (components/generate.py) and validate (components/validate.py)
    raw_dir: ClassVar[Path]  # the raw inputs (under data/raw/) generate reads and validate_raw checks

    def generate(self, p, raw_dir: Path, out_dir: Path, report_dir: Path) -> dict:
        """Write the dataset into out_dir (manifest.csv, one row per item, and what it lists)
        and report_dir (examples.png, summary.json), each swapped in whole when done
        (stage_cli.staged_output); return its JSON figures."""
        raise self._missing("generate")

    def raw_tables(self, p, raw_dir: Path, workers: int = 0) -> list[Table]:
        """The per-file facts of the raw inputs and the checks each table must pass."""
        raise self._missing("validate_raw")

    def generated_tables(self, p, data_dir: Path, workers: int = 0) -> list[Table]:
        """The per-file facts of the generated dataset and the checks each table must pass."""
        raise self._missing("validate_generated")

    # --- split (components/split.py): data_dir/manifest.csv -> one id list per split
    id_column: ClassVar[str]  # the manifest column the split lists name items by
    splits: ClassVar[tuple[str, ...]]  # every split written, train and val among them

    def assign_splits(self, manifest: pd.DataFrame, p) -> pd.Series:
        """Split name per manifest row (index aligned), one of `splits`; items that must stay
        together (a render, a recording, an identity) in one split."""
        raise self._missing("split")

    def describe_split(self, rows: pd.DataFrame) -> dict:
        """JSON figures of one split's manifest rows (split_report.json)."""
        raise self._missing("split")

    # --- gate_data (components/gate_data.py)
    # --- features (components/features.py): data_dir -> out_dir, a frozen front end's cache
    def features(self, p, data_dir: Path, out_dir: Path) -> dict:
        """Write the fixed features of every generated file into out_dir (swapped in whole when
        done); return its JSON figures."""
        raise self._missing("features")

    def make_gate_data(self, p, out_dir: Path) -> dict:
        """Write the fixed gate set into out_dir, from the section's gate seed and sizes only;
        return its JSON figures."""
        raise self._missing("gate_data")

    # --- tune (components/tune.py, components/hpo.py) and train (components/train.py)
    score: ClassVar[str]  # the validation figure printed and tracked beside val_loss, e.g. "val_f1"
    model_keys: ClassVar[tuple[str, ...]]  # searched keys of p.model
    train_keys: ClassVar[tuple[str, ...]]  # searched keys of p.train

    def trial_code(self) -> tuple[Path, ...]:
        """The source files that decide a trial's result: a change to one starts a new study."""
        raise self._missing("tune")

    def search_space(self, space) -> dict:
        """Ray Tune domains for every key of model_keys and train_keys, from p.tune.space."""
        raise self._missing("tune")

    def study_prefix(self, p) -> str:
        raise self._missing("tune")

    def trial_identity(self, p) -> dict:
        """JSON of what a trial trains with besides the searched keys and the data."""
        raise self._missing("tune")

    def trial_subset(self, p, data_dir: Path, ids: list[str], n: int) -> list[str]:
        """The fixed subset of a split's ids (about n) every trial trains or validates on: by
        default n ids drawn with p.seed."""
        from components.hpo import subset
        return subset(ids, n, p.seed)

    def fit_trial(self, p, chosen: dict, data_dir: str, train_ids: list[str], val_ids: list[str],
                  on_epoch: OnEpoch) -> None:
        """Train chosen = {"model": {...}, "train": {...}} for p.tune.max_epochs on the id
        subsets, calling on_epoch each epoch (val_loss ranks trials; score is reported)."""
        raise self._missing("tune")

    def fit(self, p, data_dir: Path, split_dir: Path, tuned: dict, on_epoch: OnEpoch) -> tuple[Any, FitResult]:
        """The final model on the train split, validated on val; `tuned` is best_config.json
        ({} without one): {"model": {...}, "train": {...}} laid over params."""
        raise self._missing("train")

    def save_model(self, model, path: Path) -> None:
        raise self._missing("train")

    def train_summary(self, model, best: dict) -> dict:
        """JSON figures for train/metrics.json from the model and its best epoch's figures."""
        raise self._missing("train")

    # --- evaluate (components/evaluate.py)
    evaluated_file: ClassVar[str]  # file name of the evaluated model under models/<section>/

    def evaluate(self, p, data_dir: Path, split_dir: Path, model_path: Path, evaluated_out: Path,
                 report_dir: Path) -> tuple[dict, dict]:
        """Judge the trained model on the held-out splits; write the evaluated model (with what
        evaluation fixed: threshold, temperature...) to evaluated_out and plots into report_dir.
        Returns (headline figures, logged to MLflow, scalars; full metrics), both JSON."""
        raise self._missing("evaluate")

    # --- register (components/register.py)
    def registered_name(self, p) -> str:
        raise self._missing("register")

    def load_evaluated(self, ref: str):
        """An evaluated model from a file path or a models:/ URI (components.refs errors)."""
        raise self._missing("register")

    def gate_figures(self, model, p, gate_dir: Path) -> dict:
        """A model's JSON figures on the gate set: gate_hash and meets_target among them."""
        raise self._missing("register")

    def decide(self, challenger: dict, champion: dict | None, p) -> GateDecision:
        """Whether the challenger's gate_figures beat the champion's (None: no champion yet)."""
        raise self._missing("register")

    def log_model(self, path: Path):
        """Log the evaluated model file to the active MLflow run; returns mlflow's ModelInfo."""
        raise self._missing("register")

    def version_tags(self, p) -> dict[str, str]:
        """Tags for a registered version, beside the gate figures and identity."""
        raise self._missing("register")

    def _missing(self, stage: str) -> MissingStage:
        return MissingStage(f"the {self.name} pipeline has no {stage} stage")


def section(pipeline: str) -> str:
    return PIPELINES[pipeline]


def load(pipeline: str) -> Task:
    """The pipeline's task (its package is imported now; its methods import their domain code)."""
    return importlib.import_module(f"components.tasks.{section(pipeline)}").TASK


def params_of(params, pipeline: str):
    """The pipeline's section of the validated params."""
    return getattr(params, section(pipeline))

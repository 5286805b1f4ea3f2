"""The trigger-word pipeline's part of the shared stages (components/tasks/__init__.py):
its data checks, split rule, search space, training, evaluation and registry gate, each
adapting the audio domain code (components/audio/) to a stage."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from components import paths
from components.audio import data_checks
from components.config import TriggerWordParams
from components.stage_cli import StageError
from components.validate import Check, Table, all_true

# ------------------------------------------------------------------------------ validate

RAW_DIR = paths.RAW_BACKGROUNDS_DIR
# A recording may be loud but should not sit at full scale: 0.1% of samples at |x| >= 0.999
MAX_CLIPPED_SHARE = 0.001
MANIFEST_COLUMNS = {"subset", "voice_family", "duration_s", "n_triggers", "triggers", "trigger_families",
                    "negatives", "file", "label_row"}


def raw_tables(p: TriggerWordParams, raw_dir: Path, workers: int = 0) -> list[Table]:
    """Every background recording decodes whole, at an accepted rate, neither silent nor
    clipped. An absent or empty folder passes."""
    v = p.validation
    return [Table("files", data_checks.raw_file_frame(raw_dir, workers), "file", [
        all_true("is_audio", "audio_file"), all_true("decodes", "decodes"),
        all_true("complete", "not_truncated"), all_true("finite", "finite"),
        Check("sample_rate_accepted", "ExpectColumnValuesToBeInSet",
              {"column": "sample_rate", "value_set": [float(r) for r in v.raw_sample_rates]}),
        Check("not_silent", "ExpectColumnValuesToBeBetween", {"column": "rms", "min_value": v.min_rms}),
        Check("not_clipped", "ExpectColumnValuesToBeBetween",
              {"column": "clipped_share", "max_value": MAX_CLIPPED_SHARE})])]


def generated_tables(p: TriggerWordParams, data_dir: Path, workers: int = 0) -> list[Table]:
    """Audio facts of every file, label alignment, word overlap, voice-family split and
    class/family balance of the generated dataset."""
    manifest, labels = _load_generated(data_dir)
    files = data_checks.generated_file_frame(data_dir, manifest, labels, p.audio.sample_rate, p.labels.step_ms / 1000,
                                             p.labels.pulse_steps, p.speech.held_out_family, workers)
    families = data_checks.family_frame(files, p.speech.families, p.speech.held_out_family)
    v = p.validation
    low, high = data_checks.balance_limits(families["main_clips"], v.family_balance_tolerance)
    return [
        Table("files", files, "file", [
            all_true("exists", "file_exists"), all_true("decodes", "decodes"),
            Check("sample_rate", "ExpectColumnValuesToBeInSet",
                  {"column": "sample_rate", "value_set": [float(p.audio.sample_rate)]}),
            Check("duration_exact", "ExpectColumnPairValuesToBeEqual", {
                "column_A": "n_samples", "column_B": "expected_samples", "ignore_row_if": "either_value_is_missing"}),
            all_true("finite", "finite"),
            Check("peak", "ExpectColumnValuesToBeBetween", {"column": "peak", "min_value": 0.0, "max_value": v.max_peak}),
            Check("rms", "ExpectColumnValuesToBeBetween", {"column": "rms", "min_value": v.min_rms, "max_value": v.max_rms}),
            Check("subset_known", "ExpectColumnValuesToBeInSet",
                  {"column": "subset", "value_set": list(data_checks.SUBSETS)}),
            all_true("labels_match", "labels_at_trigger_ends"), all_true("words_disjoint", "words_do_not_overlap"),
            all_true("held_out_isolated", "held_out_family_isolated"),
            Check("positive_share", "ExpectColumnMeanToBeBetween", {
                "column": "has_trigger", "min_value": v.min_positive_share, "max_value": v.max_positive_share},
                where=("subset", "main"))]),
        Table("families", families, "family", [
            Check("family_balance", "ExpectColumnValuesToBeBetween",
                  {"column": "main_clips", "min_value": low, "max_value": high})]),
    ]


def _load_generated(data_dir: Path) -> tuple[pd.DataFrame, np.ndarray]:
    try:
        manifest = pd.read_csv(data_dir / "manifest.csv")
        labels = np.load(data_dir / "labels.npy")
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise StageError(f"{data_dir}: cannot read the generated dataset ({str(exc).splitlines()[0]}); "
                         "run the generate stage first") from None
    missing = MANIFEST_COLUMNS - set(manifest.columns)
    if missing or labels.ndim != 2:
        raise StageError(f"{data_dir}: manifest.csv lacks columns {sorted(missing)}" if missing
                         else f"{data_dir}/labels.npy: expected [clips, steps], got shape {labels.shape}")
    return manifest, labels


# --------------------------------------------------------------------------------- split

ID_COLUMN = "clip_id"
SPLITS = ("train", "val", "test", "test_unseen_voice", "negative_stream_val", "negative_stream_test")


def assign_splits(manifest: pd.DataFrame, p: TriggerWordParams) -> pd.Series:
    """- Main clips: stratified on (trigger present, background kind), grouped by resource
      group, so a TTS render or a background recording never reaches two splits.
    - Negative stream: whole stream groups go to val or test (a segment and its renders stay
      together). The stream is for measuring false accepts, never for training.
    - Unseen voice: every clip of the held-out family is test_unseen_voice."""
    from components.split import deal_folds

    split = pd.Series("", index=manifest.index)
    main = manifest[manifest["subset"] == "main"]
    strata = (main["n_triggers"] > 0).map({True: "pos", False: "neg"}) + "|" + main["background"]
    shares = {"train": p.split.train, "val": p.split.val, "test": p.split.test}
    split[main.index] = deal_folds(strata, main["group"], shares, p.seed)
    stream = manifest[manifest["subset"] == "negative_stream"]
    split[stream.index] = _split_stream(stream, p.split.negative_stream_val, p.seed)
    split[manifest["subset"] == "unseen_voice"] = "test_unseen_voice"
    return split


def _split_stream(stream: pd.DataFrame, val_share: float, seed: int) -> pd.Series:
    groups = np.random.default_rng(seed).permutation(sorted(stream["group"].unique()))
    if len(groups) == 1:
        raise StageError("split: the negative stream needs at least 2 groups (negative_stream.groups) for val and test")
    n_val = min(max(1, round(val_share * len(groups))), len(groups) - 1) if len(groups) else 0
    val_groups = set(groups[:n_val].tolist())
    return stream["group"].map(lambda g: "negative_stream_val" if g in val_groups else "negative_stream_test")


def describe_split(rows: pd.DataFrame) -> dict:
    return {"clips": len(rows), "hours": round(float(rows["duration_s"].sum()) / 3600, 3),
            "positive_share": round(float((rows["n_triggers"] > 0).mean()), 3) if len(rows) else 0.0,
            "groups": int(rows["group"].nunique()),
            "backgrounds": rows["background"].value_counts(normalize=True).round(3).sort_index().to_dict()}


# ------------------------------------------------------------------------- tune and train

SCORE = "val_f1"  # frame F1 at 0.5, the figure printed beside the loss
MODEL_KEYS = ("conv_filters", "gru_hidden", "gru_layers", "dropout")  # searched keys, by params section
TRAIN_KEYS = ("lr", "batch_size", "pos_weight")


def _trial_code() -> tuple[Path, ...]:
    from components.audio import features, model, training
    return tuple(Path(m.__file__) for m in (features, model, training))


TRIAL_CODE = _trial_code()  # code that decides a trial's result: a change to it starts a new study


def search_space(space) -> dict:
    """Ray Tune domains for every searched key (OptunaSearch converts them)."""
    from ray import tune

    return {"lr": tune.loguniform(*space.lr), "batch_size": tune.choice(space.batch_size),
            "pos_weight": tune.uniform(*space.pos_weight), "conv_filters": tune.choice(space.conv_filters),
            "gru_hidden": tune.choice(space.gru_hidden), "gru_layers": tune.choice(space.gru_layers),
            "dropout": tune.uniform(*space.dropout)}


def study_prefix(p: TriggerWordParams) -> str:
    return p.slug


def trial_identity(p: TriggerWordParams) -> dict:
    """What a trial trains with besides the searched keys and the data."""
    return {"features": p.features.model_dump(), "model": p.model.model_dump(exclude=set(MODEL_KEYS)),
            "train": p.train.model_dump(include={"weight_decay", "lr_schedule"})}


def train_config(p: TriggerWordParams, overrides: dict | None = None):
    import os

    from components.audio.training import TrainConfig

    t = {**p.train.model_dump(), **(overrides or {})}
    threads = t.pop("threads") or len(os.sched_getaffinity(0))
    return TrainConfig(lr=t["lr"], batch_size=t["batch_size"], max_epochs=t["max_epochs"], patience=t["patience"],
                       pos_weight=t["pos_weight"], weight_decay=t["weight_decay"], lr_schedule=t["lr_schedule"],
                       max_minutes=t["max_minutes"], num_threads=threads, seed=p.seed)


def build_model(p: TriggerWordParams, model_overrides: dict | None = None):
    import torch

    from components.audio.features import FeatureConfig
    from components.audio.model import ModelConfig, TriggerWordModel

    torch.manual_seed(p.seed)  # the initial weights are part of the experiment
    model = TriggerWordModel(FeatureConfig(**p.features.model_dump()),
                             ModelConfig(**{**p.model.model_dump(), **(model_overrides or {})}))
    model.metadata = {"word": p.word, "slug": p.slug}
    return model


def fit_trial(p: TriggerWordParams, chosen: dict, data_dir: str, train_ids: list[str], val_ids: list[str],
              on_epoch) -> None:
    """Train one configuration on the tune subsets. Trials are ranked by the unweighted BCE:
    train()'s val_loss is weighted by the trial's own pos_weight, which is searched, so
    ranked by it small weights would win by construction."""
    import torch

    from components.audio.training import ClipDataset, evaluate, train

    net = build_model(p, chosen["model"])
    budget = p.tune
    cfg = train_config(p, {**chosen["train"], "max_epochs": budget.max_epochs, "patience": budget.max_epochs,
                           "max_minutes": budget.trial_minutes, "threads": 1})
    train_ds = ClipDataset(data_dir, train_ids, samples_per_step=net.samples_per_step)
    val_ds = ClipDataset(data_dir, val_ids, samples_per_step=net.samples_per_step)
    plain_bce = torch.nn.BCEWithLogitsLoss()

    def epoch_done(epoch: int, m: dict) -> None:
        on_epoch(epoch, {**m, "val_loss_weighted": m["val_loss"], "val_loss": evaluate(net, val_ds, cfg, plain_bce)["loss"]})
    train(net, train_ds, val_ds, cfg, on_epoch=epoch_done)


def fit(p: TriggerWordParams, data_dir: Path, split_dir: Path, tuned: dict, on_epoch):
    """The final model: streams batches from the split's WAV files (never all audio at once)."""
    from components.audio.training import ClipDataset, train
    from components.split import read_split

    model = build_model(p, tuned.get("model"))
    cfg = train_config(p, tuned.get("train"))
    train_ds = ClipDataset(data_dir, read_split(split_dir, "train"), samples_per_step=model.samples_per_step)
    val_ds = ClipDataset(data_dir, read_split(split_dir, "val"), samples_per_step=model.samples_per_step)
    print(f"training on {len(train_ds)} clips, validating on {len(val_ds)}; {model.size_bytes() / 1e6:.2f} MB fp32, "
          f"{cfg.num_threads} threads, cap {cfg.max_minutes} min", flush=True)
    return model, train(model, train_ds, val_ds, cfg, on_epoch=on_epoch)


def save_model(model, path: Path) -> None:
    from components.audio.model import save_model as save
    save(model, path)


def train_summary(model, best: dict) -> dict:
    return {"val_loss": round(best["val_loss"], 5), "val_frame_f1": round(best["val_f1"], 4),
            "size_kb": round(model.size_bytes() / 1024, 1)}


# ------------------------------------------------------------------------------ evaluate

EVALUATED_FILE = "detector.pt"  # the model with its operating threshold (components/detect.py reads it)
# reported set -> the splits it pools; validation pools its clips with the stream's val half
REPORTED = {"val": ("val", "negative_stream_val"), "test": ("test",),
            "negative_stream_test": ("negative_stream_test",), "test_unseen_voice": ("test_unseen_voice",)}


def evaluate(p: TriggerWordParams, data_dir: Path, split_dir: Path, model_path: Path, detector_out: Path,
             out: Path) -> tuple[dict, dict]:
    """Event-level figures (DESIGN §4 "Metrics"):
    1. scores every clip of val, test, test_unseen_voice and both halves of the negative stream;
    2. picks the operating threshold on validation (val clips + the val half of the stream):
       the lowest threshold whose FA/h <= detection.target_fa_per_hour;
    3. reports, at that threshold: FRR and FA/h on test, FA/h on the test half of the stream,
       FRR and FA/h on test_unseen_voice; frame-level precision/recall/F1; median detection
       latency; FRR by voice family and by background kind; the DET curves (det.csv,
       det.png) and a picture of misses and false accepts (errors.png)."""
    import csv

    from components.audio import detection as det
    from components.audio.evaluation import at_threshold, det_curve, score_split
    from components.audio.figures import plot_errors
    from components.audio.model import load_model, save_model as save
    from components.split import read_split

    model = load_model(model_path)
    manifest = pd.read_csv(data_dir / "manifest.csv")
    labels = np.load(data_dir / "labels.npy", mmap_mode="r")
    step_s, window = model.step_seconds, p.detection.window_after_s
    base = det.DetectionConfig(smoothing_steps=p.detection.smoothing_steps, refractory_s=p.detection.refractory_s)
    names = ("val", "negative_stream_val", "test", "negative_stream_test", "test_unseen_voice")
    scored = {name: score_split(model, data_dir, manifest, read_split(split_dir, name)) for name in names}

    curves = {"val": det_curve(scored["val"] + scored["negative_stream_val"], step_s, base, window)}
    threshold = float(det.pick_operating_threshold(curves["val"], p.detection.target_fa_per_hour))
    cfg = det.DetectionConfig(smoothing_steps=base.smoothing_steps, refractory_s=base.refractory_s, threshold=threshold)
    metrics: dict = {"threshold": round(threshold, 5), "target_fa_per_hour": p.detection.target_fa_per_hour}
    errors = {}
    for name, parts in REPORTED.items():
        clips = [c for part in parts for c in scored[part]]
        curves.setdefault(name, det_curve(clips, step_s, base, window))
        result = at_threshold(clips, step_s, cfg, window, labels)
        errors[name] = (result.pop("_misses"), result.pop("_false_accepts"))
        metrics[name] = result
    headline = {"frr_test": metrics["test"]["frr"], "fa_per_hour_test": metrics["test"]["fa_per_hour"],
                "fa_per_hour_stream": metrics["negative_stream_test"]["fa_per_hour"],
                "frr_unseen_voice": metrics["test_unseen_voice"]["frr"],
                "fa_per_hour_unseen_voice": metrics["test_unseen_voice"]["fa_per_hour"],
                "frame_f1_test": metrics["test"].get("frame_f1"), "latency_median_s": metrics["test"]["latency_median_s"]}

    model.threshold = threshold
    model.metadata = {**model.metadata, "detection": {"smoothing_steps": cfg.smoothing_steps,
                                                      "refractory_s": cfg.refractory_s}}
    save(model, detector_out)
    with open(out / "det.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["split", "threshold", "frr", "fa_per_hour"])
        writer.writeheader()
        for name, curve in curves.items():
            writer.writerows({"split": name, **row} for row in det.det_curve_rows(curve))
    det.plot_det_curve(curves, {"test": threshold}, out / "det.png")
    test_misses, test_fas = errors["test"]
    plot_errors(data_dir, manifest, test_misses[:3], test_fas[:3] + errors["negative_stream_test"][1][:1],
                step_s, cfg, out / "errors.png")
    return headline, metrics


# ------------------------------------------------------------------------------ register

GATE_SPLITS = ("test", "negative_stream_test")


def registered_name(p: TriggerWordParams) -> str:
    from components.registry import registered_name as name
    return name(p.slug)


def version_tags(p: TriggerWordParams) -> dict:
    return {"trigger_word": p.word}


def load_evaluated(ref: str):
    from components.detect import load_detector
    return load_detector(ref)


def log_model(detector_path: Path):
    from components.registry import log_detector
    return log_detector(detector_path)


def gate_figures(model, p: TriggerWordParams, data_dir: Path, split_dir: Path) -> dict:
    """FRR and FA/h of a detector at its own threshold on the test split and the test half
    of the negative stream."""
    from components.audio import detection as det
    from components.audio.evaluation import at_threshold, score_split
    from components.split import read_split

    manifest = pd.read_csv(data_dir / "manifest.csv")
    clips = [c for name in GATE_SPLITS for c in score_split(model, data_dir, manifest, read_split(split_dir, name))]
    cfg = det.DetectionConfig(smoothing_steps=p.detection.smoothing_steps, refractory_s=p.detection.refractory_s,
                              threshold=model.threshold)
    result = at_threshold(clips, model.step_seconds, cfg, p.detection.window_after_s)
    return {"frr": result["frr"], "fa_per_hour": result["fa_per_hour"], "threshold": round(model.threshold, 5)}


def decide(challenger: dict, champion: dict | None, p: TriggerWordParams) -> tuple[bool, str]:
    """Promote when FRR is lower by more than gate.min_frr_improvement and FA/h is not
    worse by more than gate.fa_per_hour_tolerance."""
    if champion is None:
        return True, "no champion yet"
    gate = p.gate
    fa_ok = challenger["fa_per_hour"] <= champion["fa_per_hour"] + gate.fa_per_hour_tolerance
    better = challenger["frr"] < champion["frr"] - gate.min_frr_improvement
    figures = (f"FRR {challenger['frr']:.4f} vs {champion['frr']:.4f}, "
               f"FA/h {challenger['fa_per_hour']:.3f} vs {champion['fa_per_hour']:.3f}")
    if better and fa_ok:
        return True, f"beats champion: {figures}"
    why = "FA/h worse" if not fa_ok else "FRR not lower"
    return False, f"kept champion ({why}): {figures}"

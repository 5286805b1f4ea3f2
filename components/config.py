"""Typed, validated view of params.yaml.

One `Params` object is loaded at the edge (a stage's CLI, the flow) and passed down.
Unknown keys, wrong types and out-of-range values raise `ParamsError` with one line
naming the dotted key and what is allowed; the CLI prints that line and exits 2.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from components.paths import PARAMS_FILE


class ParamsError(ValueError):
    """A params file or override that does not fit the schema (message is one line)."""


class Section(BaseModel):
    # strict: "5" is not an int; extra="forbid": a typo is an error, not a silent default
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Prob = Annotated[float, Field(ge=0.0, le=1.0)]
Range = Annotated[list[float], Field(min_length=2, max_length=2)]   # [low, high]
# train.precision (components/precision.py): auto is bf16 where the CPU computes it natively
Precision = Literal["auto", "bf16", "fp32"]


def _ordered(name: str, pair: Range) -> None:
    if pair[0] > pair[1]:
        raise ValueError(f"{name} must be [low, high] with low <= high, got {list(pair)}")


class AudioParams(Section):
    sample_rate: Literal[16000] = 16000
    clip_seconds: float = Field(10.0, gt=1.0, le=60.0)


class LabelParams(Section):
    step_ms: Annotated[int, Field(ge=5, le=100)] = 20
    pulse_steps: Annotated[int, Field(ge=1, le=200)] = 15


class SpeechParams(Section):
    families: list[str] = Field(min_length=2)
    held_out_family: str
    trigger_renders: Annotated[int, Field(ge=4)] = 600
    renders_per_negative_word: Annotated[int, Field(ge=1)] = 6
    confusables: list[str] = []
    auto_confusables: Annotated[int, Field(ge=0)] = 30
    extra_negative_words: list[str] = []
    random_negative_words: Annotated[int, Field(ge=0)] = 150

    @model_validator(mode="after")
    def _held_out_is_a_family(self):
        if self.held_out_family not in self.families:
            raise ValueError(f"held_out_family {self.held_out_family!r} must be one of families {self.families}")
        return self


class ClipParams(Section):
    main: Annotated[int, Field(ge=10)] = 3000
    unseen_voice: Annotated[int, Field(ge=1)] = 300
    max_triggers: Annotated[int, Field(ge=1, le=10)] = 3
    max_negatives: Annotated[int, Field(ge=0, le=20)] = 5
    p_no_trigger: Prob = 0.3
    hard_negative_share: Prob = 0.5
    snr_db: Range = [0.0, 30.0]
    min_gap_s: float = Field(0.15, ge=0.0)

    @model_validator(mode="after")
    def _snr_ordered(self):
        _ordered("snr_db", self.snr_db)
        return self


class NegativeStreamParams(Section):
    minutes: float = Field(120.0, ge=1.0)
    segment_seconds: float = Field(60.0, ge=10.0, le=600.0)
    words_per_minute: float = Field(20.0, ge=0.0)
    groups: Annotated[int, Field(ge=2, le=1000)] = 10


class AugmentParams(Section):
    speed_range: Range = [0.9, 1.1]
    gain_db_range: Range = [-6.0, 6.0]
    reverb_prob: Prob = 0.5
    rt60_range: Range = [0.15, 0.8]
    eq_prob: Prob = 0.5

    @model_validator(mode="after")
    def _ranges(self):
        for name in ("speed_range", "gain_db_range", "rt60_range"):
            _ordered(name, getattr(self, name))
        if self.speed_range[0] <= 0 or self.rt60_range[0] <= 0:
            raise ValueError("speed_range and rt60_range must be > 0")
        return self


class BackgroundParams(Section):
    kinds: list[Literal["white", "pink", "brown", "babble", "hum", "tonal"]] = Field(min_length=1)
    recorded_prob: Prob = 0.5


class GenerateParams(Section):
    workers: Annotated[int, Field(ge=0, le=64)] = 0   # 0: one per core
    groups: Annotated[int, Field(ge=10, le=10000)] = 50


class Shares(Section):
    """A split's shares of the items (train gets the folds the others leave)."""
    train: Prob = 0.8
    val: Prob = 0.1
    test: Prob = 0.1

    @model_validator(mode="after")
    def _sum_to_one(self):
        if abs(self.train + self.val + self.test - 1.0) > 1e-6:
            raise ValueError("train + val + test must sum to 1")
        return self


class SplitParams(Shares):
    negative_stream_val: Prob = 0.5


class ValidateParams(Section):
    max_peak: float = Field(0.999, gt=0.0, le=1.0)
    min_rms: float = Field(1e-3, gt=0.0)
    max_rms: float = Field(0.5, gt=0.0, le=1.0)
    min_positive_share: Prob = 0.5
    max_positive_share: Prob = 0.85
    family_balance_tolerance: Prob = 0.5
    raw_sample_rates: list[int] = [8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000]


class FeatureParams(Section):
    frontend: Literal["logmel", "speech_embedding"] = "logmel"
    win_length: Annotated[int, Field(ge=64, le=2048)] = 400
    hop_length: Annotated[int, Field(ge=32, le=1024)] = 160
    n_fft: Annotated[int, Field(ge=64, le=4096)] = 512
    n_mels: Annotated[int, Field(ge=8, le=128)] = 40
    fmin: float = Field(20.0, ge=0.0)
    fmax: float = Field(7600.0, gt=0.0, le=8000.0)

    @model_validator(mode="after")
    def _window_fits(self):
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length ({self.win_length}) must be <= n_fft ({self.n_fft})")
        if self.hop_length > self.win_length:  # frames would skip samples
            raise ValueError(f"hop_length ({self.hop_length}) must be <= win_length ({self.win_length})")
        if self.fmin >= self.fmax:
            raise ValueError("fmin must be < fmax")
        return self


class HeadParams(Section):
    """trigger_word.model.head: the head over the speech embedding (components/audio/embedding_model.py)."""
    kind: Literal["mlp", "gru"] = "mlp"
    context_steps: Annotated[int, Field(ge=1, le=64)] = 16
    hidden: Annotated[int, Field(ge=8, le=512)] = 128
    layers: Annotated[int, Field(ge=1, le=4)] = 2


class ModelParams(Section):
    head: HeadParams = HeadParams()
    conv_filters: Annotated[int, Field(ge=4, le=512)] = 64
    conv_kernel: Annotated[int, Field(ge=1, le=31)] = 5
    conv_stride: Annotated[int, Field(ge=1, le=8)] = 2
    gru_hidden: Annotated[int, Field(ge=8, le=512)] = 96
    gru_layers: Annotated[int, Field(ge=1, le=4)] = 2
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1

    @model_validator(mode="after")
    def _stride_within_kernel(self):
        if self.conv_stride > self.conv_kernel:  # otherwise frames are skipped
            raise ValueError(f"conv_stride ({self.conv_stride}) must be <= conv_kernel ({self.conv_kernel})")
        return self


class TrainParams(Section):
    lr: float = Field(2e-3, gt=0.0, le=1.0)
    batch_size: Annotated[int, Field(ge=1, le=1024)] = 32
    max_epochs: Annotated[int, Field(ge=1, le=1000)] = 12  # the budget: epochs, never minutes
    patience: Annotated[int, Field(ge=1, le=100)] = 4
    pos_weight: float = Field(5.0, gt=0.0, le=1000.0)
    weight_decay: float = Field(0.0, ge=0.0)
    lr_schedule: Literal["plateau", "onecycle", "cosine", "constant"] = "plateau"
    safety_minutes: float = Field(60.0, gt=0.0)  # past it the stage fails; it never shortens training
    threads: Annotated[int, Field(ge=0, le=256)] = 0   # 0: one per core (same count, same model)


class DetectionParams(Section):
    smoothing_steps: Annotated[int, Field(ge=1, le=100)] = 5
    refractory_s: float = Field(1.0, ge=0.0, le=10.0)
    window_after_s: float = Field(1.0, ge=0.0, le=5.0)
    target_fa_per_hour: float = Field(0.5, gt=0.0)


class GateParams(Section):
    """trigger_word.gate: the fixed gate set (stage trigger_word-gate_data) and the promotion rule."""
    seed: int = 1  # the gate set's own seed: never the pipeline's, so every training seed meets the same set
    negative_hours: float = Field(5.0, ge=0.01, le=100.0)  # negative-only audio (>= 5 h for a 0.5 FA/h target)
    positive_clips: Annotated[int, Field(ge=1, le=100_000)] = 400  # clips of 1..clips.max_triggers triggers
    target_fa_per_hour: float = Field(0.5, gt=0.0)  # both models' FRR is compared at this FA/h
    target_frr: Prob = 0.1  # the quality floor: FRR a champion should reach at target_fa_per_hour
    confidence: float = Field(0.95, gt=0.5, lt=1.0)  # of the Wilson (FRR) and Poisson (false accepts) intervals


class TuneSpace(Section):
    """The tune stage's search space: float ranges are [low, high], the rest are choice lists."""
    lr: Range = [5e-4, 5e-3]  # sampled log-uniformly
    gru_hidden: list[Annotated[int, Field(ge=8, le=512)]] = Field([64, 96, 128], min_length=1)
    gru_layers: list[Annotated[int, Field(ge=1, le=4)]] = Field([1, 2], min_length=1)
    conv_filters: list[Annotated[int, Field(ge=4, le=512)]] = Field([32, 64], min_length=1)
    dropout: Range = [0.0, 0.3]
    pos_weight: Range = [2.0, 10.0]
    batch_size: list[Annotated[int, Field(ge=1, le=1024)]] = Field([16, 32], min_length=1)

    @model_validator(mode="after")
    def _ranges(self):
        for name in ("lr", "dropout", "pos_weight"):
            low, high = getattr(self, name)
            if not low < high:  # a pinned value belongs in the model/train section instead
                raise ValueError(f"{name} must be [low, high] with low < high, got {[low, high]}")
        if self.lr[0] <= 0 or self.pos_weight[0] <= 0:
            raise ValueError("lr and pos_weight ranges must be > 0")
        if self.dropout[0] < 0 or self.dropout[1] >= 1:
            raise ValueError(f"dropout must lie in [0, 1), got {list(self.dropout)}")
        return self


class TuneBudget(Section):
    """How much searching the tune stage does (each pipeline adds its own `space`)."""
    trials: Annotated[int, Field(ge=0, le=1000)] = 8  # 0: no search, params' own values
    concurrency: Annotated[int, Field(ge=1, le=256)] = 2
    startup_trials: Annotated[int, Field(ge=1, le=1000)] = 4  # random trials before TPE models the results
    train_items: Annotated[int, Field(ge=1)] = 600  # the seeded subset of train every trial trains on
    val_items: Annotated[int, Field(ge=1)] = 150
    max_epochs: Annotated[int, Field(ge=1, le=100)] = 4
    grace_epochs: Annotated[int, Field(ge=1, le=100)] = 1
    reduction_factor: Annotated[int, Field(ge=2, le=10)] = 2

    @model_validator(mode="after")
    def _grace_within_budget(self):
        if self.grace_epochs > self.max_epochs:
            raise ValueError(f"grace_epochs ({self.grace_epochs}) must be <= max_epochs ({self.max_epochs})")
        return self


class TuneParams(TuneBudget):
    space: TuneSpace = TuneSpace()


class ExportParams(Section):
    """`cs230 export`: the on-device variants (components/export.py)."""
    sparsity: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5
    finetune_clips: Annotated[int, Field(ge=0)] = 800  # 0: the whole train split
    prune_epochs: Annotated[int, Field(ge=1, le=1000)] = 8
    prune_lr: float = Field(5e-4, gt=0.0, le=1.0)
    student_conv_filters: Annotated[int, Field(ge=1, le=512)] = 32
    student_gru_hidden: Annotated[int, Field(ge=1, le=512)] = 48
    student_gru_layers: Annotated[int, Field(ge=1, le=4)] = 1
    distill_epochs: Annotated[int, Field(ge=1, le=1000)] = 30
    distill_lr: float = Field(2e-3, gt=0.0, le=1.0)
    latency_repeats: Annotated[int, Field(ge=1, le=100)] = 5


class TriggerWordParams(Section):
    word: str = Field("activate", min_length=1, max_length=64, pattern=r"^[A-Za-z][A-Za-z' -]*$")
    seed: int = 0
    audio: AudioParams = AudioParams()
    labels: LabelParams = LabelParams()
    speech: SpeechParams
    clips: ClipParams = ClipParams()
    negative_stream: NegativeStreamParams = NegativeStreamParams()
    augment: AugmentParams = AugmentParams()
    backgrounds: BackgroundParams
    generate: GenerateParams = GenerateParams()
    split: SplitParams = SplitParams()
    validation: ValidateParams = ValidateParams()
    features: FeatureParams = FeatureParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    tune: TuneParams = TuneParams()
    detection: DetectionParams = DetectionParams()
    gate: GateParams = GateParams()
    export: ExportParams = ExportParams()

    @model_validator(mode="after")
    def _output_step_matches_labels(self):
        if self.features.frontend == "speech_embedding":  # labels are pooled onto its 80 ms steps
            if 80 % self.labels.step_ms:
                raise ValueError(f"labels.step_ms ({self.labels.step_ms}) must divide the speech embedding's 80 ms step")
            return self
        step_ms = self.features.hop_length * self.model.conv_stride * 1000 / self.audio.sample_rate
        if abs(step_ms - self.labels.step_ms) > 1e-9:
            raise ValueError(f"labels.step_ms ({self.labels.step_ms}) must equal features.hop_length x model.conv_stride "
                             f"= {step_ms:g} ms at {self.audio.sample_rate} Hz")
        return self

    @property
    def slug(self) -> str:
        """Registry-safe name of the phrase: lower-case, spaces as '-' (DESIGN §4)."""
        return "-".join(self.word.lower().split())


# ------------------------------------------------------------------------------ day/night

class SceneParams(Section):
    """day_night.generate: the procedural scene renderer (components/vision/scenes.py)."""
    images: Annotated[int, Field(ge=20, le=1_000_000)] = 10_000
    source: Literal["auto", "synthetic", "user"] = "auto"  # auto: user images if data/raw/day_night has any
    night_share: Prob = 0.5
    elevation_deg: Range = [-30.0, 70.0]  # sun elevations drawn from: deep night to high summer sun
    twilight_share: Prob = 0.2
    twilight_band_deg: float = Field(8.0, gt=0.0, le=30.0)
    overcast_share: Prob = 0.25
    city_share: Prob = 0.4
    artificial_light_share: Prob = 0.3
    haze_share: Prob = 0.2
    long_exposure_share: Prob = 0.1  # of night images: night mode brightens them
    auto_exposure: Prob = 0.6  # share of the scene's brightness the camera's metering cancels
    exposure_ev: Range = [-1.0, 1.0]
    white_balance: Range = [-0.15, 0.15]
    max_gain_ev: Range = [3.0, 7.0]  # the camera's exposure limit: how far it can brighten a dark scene
    # Camera styles (components/vision/camera.py) training images are drawn in; unseen_style is
    # held out: unseen_style_images more scenes in it form the split test_unseen_style.
    styles: list[Literal["phone", "dslr", "webcam", "film", "painted"]] = Field(
        ["phone", "dslr", "webcam", "film"], min_length=1)
    unseen_style: Literal["phone", "dslr", "webcam", "film", "painted"] = "painted"
    unseen_style_images: Annotated[int, Field(ge=0, le=1_000_000)] = 1000

    @model_validator(mode="after")
    def _ranges(self):
        for name in ("elevation_deg", "exposure_ev", "white_balance", "max_gain_ev"):
            _ordered(name, getattr(self, name))
        if self.unseen_style in self.styles:
            raise ValueError(f"unseen_style {self.unseen_style!r} is one of styles: training would see it")
        return self


class DayNightLabels(Section):
    night_below_deg: float = Field(-6.0, ge=-18.0, le=10.0)  # the rule: night if the sun is lower


class DayNightValidation(Section):
    min_night_share: Prob = 0.4
    max_night_share: Prob = 0.6
    min_pixel_std: float = Field(1.0, ge=0.0)  # an image flatter than this (0-255 units) is blank
    min_user_image_side: Annotated[int, Field(ge=1, le=4096)] = 16


class DayNightModel(Section):
    kind: Literal["mlp", "cnn", "efficientnet_lite0"] = "mlp"
    depth: Annotated[int, Field(ge=1, le=4)] = 1  # hidden layers of the MLP
    width: Annotated[int, Field(ge=1, le=4096)] = 32  # units per hidden layer (MLP)
    activation: Literal["relu", "leaky_relu", "tanh", "sigmoid"] = "relu"
    init: Literal["he", "xavier", "small_random", "zeros"] = "he"
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    cnn_channels: list[Annotated[int, Field(ge=1, le=512)]] = Field([16, 32, 64], min_length=1, max_length=5)
    backend: Literal["torch", "numpy"] = "torch"  # numpy: the from-scratch network trains the MLP
    backbone_input: Annotated[int, Field(ge=32, le=512)] = 64  # efficientnet_lite0: side fed to the backbone


class DayNightAugment(Section):
    """day_night.train.augment: photometric augmentation of training batches (components/vision/augment.py)."""
    enabled: bool = False
    colour: float = Field(0.15, ge=0.0, le=2.0)  # per-channel gain and saturation, log2 std
    exposure_ev: float = Field(0.4, ge=0.0, le=4.0)  # brightness shift, +- stops
    gamma: float = Field(0.2, ge=0.0, le=2.0)  # exponent exp(U(-gamma, gamma))
    noise: float = Field(0.03, ge=0.0, le=0.5)  # Gaussian noise std at most, share of full scale
    blur: Prob = 0.3  # chance of a 3x3 box blur
    cutouts: Annotated[int, Field(ge=0, le=10)] = 2  # rectangles of flat grey, at most, per image
    p: Prob = 0.8  # chance an image is augmented at all


class DayNightTrain(Section):
    optimizer: Literal["sgd", "momentum", "rmsprop", "adam"] = "adam"
    lr: float = Field(1e-3, gt=0.0, le=10.0)
    lr_decay: float = Field(0.1, ge=0.0)  # epoch e trains at lr / (1 + lr_decay (e - 1))
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 64
    weight_decay: float = Field(0.0, ge=0.0)  # L2
    max_epochs: Annotated[int, Field(ge=1, le=1000)] = 40  # the budget: epochs, never minutes
    patience: Annotated[int, Field(ge=1, le=100)] = 6
    safety_minutes: float = Field(30.0, gt=0.0)  # past it the stage fails; it never shortens training
    threads: Annotated[int, Field(ge=0, le=256)] = 0  # 0: one per core (same count, same model)
    augment: DayNightAugment = DayNightAugment()


class DayNightSpace(Section):
    """The day/night search space: float ranges are [low, high], the rest are choice lists."""
    kind: list[Literal["mlp", "cnn", "efficientnet_lite0"]] = Field(["mlp", "cnn"], min_length=1)
    depth: list[Annotated[int, Field(ge=1, le=4)]] = Field([1, 2, 3, 4], min_length=1)
    width: list[Annotated[int, Field(ge=1, le=4096)]] = Field([32, 64, 128], min_length=1)
    activation: list[Literal["relu", "leaky_relu", "tanh", "sigmoid"]] = Field(["relu", "leaky_relu", "tanh", "sigmoid"],
                                                                                min_length=1)
    init: list[Literal["he", "xavier", "small_random"]] = Field(["he", "xavier", "small_random"], min_length=1)
    optimizer: list[Literal["sgd", "momentum", "rmsprop", "adam"]] = Field(["sgd", "momentum", "rmsprop", "adam"],
                                                                            min_length=1)
    lr: Range = [1e-4, 1e-1]  # log-uniform
    batch_size: list[Annotated[int, Field(ge=1, le=4096)]] = Field([32, 64, 128], min_length=1)
    weight_decay: Range = [1e-6, 1e-2]  # log-uniform
    dropout: Range = [0.0, 0.3]

    @model_validator(mode="after")
    def _ranges(self):
        for name in ("lr", "weight_decay", "dropout"):
            low, high = getattr(self, name)
            if not low < high:
                raise ValueError(f"{name} must be [low, high] with low < high, got {[low, high]}")
        if self.lr[0] <= 0 or self.weight_decay[0] <= 0:
            raise ValueError("lr and weight_decay ranges are log-uniform: both ends must be > 0")
        if self.dropout[0] < 0 or self.dropout[1] >= 1:
            raise ValueError(f"dropout must lie in [0, 1), got {list(self.dropout)}")
        return self


class DayNightTune(TuneBudget):
    space: DayNightSpace = DayNightSpace()


class DayNightEvaluation(Section):
    threshold: Prob = 0.5  # P(night) at or above which an image is called night
    calibration: Literal["temperature", "none"] = "temperature"  # fitted on val (Guo et al. 2017)
    ece_bins: Annotated[int, Field(ge=2, le=100)] = 15
    gallery: Annotated[int, Field(ge=0, le=64)] = 16  # worst errors shown


class DayNightGate(Section):
    """day_night.gate: the fixed gate set (stage day_night-gate_data) and the promotion rule."""
    seed: int = 1  # the gate set's own seed, independent of the pipeline's
    images: Annotated[int, Field(ge=100, le=1_000_000)] = 5000  # rendered scenes, balanced by generate.night_share
    metric: Literal["roc_auc", "accuracy", "ece", "log_loss"] = "roc_auc"
    confidence: float = Field(0.95, gt=0.5, lt=1.0)  # of the intervals a gain must clear
    accuracy_tolerance: Prob = 0.002  # never promote accuracy lower than the champion's by more
    ece_tolerance: Prob = 0.01  # never promote ECE higher than the champion's by more
    target_accuracy: Prob = 0.97  # the quality floor: gate accuracy a champion should reach


class DayNightParams(Section):
    seed: int = 0
    image_size: Literal[64] = 64
    generate: SceneParams = SceneParams()
    labels: DayNightLabels = DayNightLabels()
    validation: DayNightValidation = DayNightValidation()
    split: Shares = Shares(train=0.7, val=0.1, test=0.2)
    model: DayNightModel = DayNightModel()
    train: DayNightTrain = DayNightTrain()
    tune: DayNightTune = DayNightTune()
    evaluation: DayNightEvaluation = DayNightEvaluation()
    gate: DayNightGate = DayNightGate()

    @model_validator(mode="after")
    def _numpy_backend_is_an_mlp(self):
        if self.model.backend == "numpy" and self.model.kind != "mlp":
            raise ValueError("model.backend numpy trains the MLP only: set model.kind mlp")
        return self

    @model_validator(mode="after")
    def _twilight_within_the_elevations(self):
        (low, high), band = self.generate.elevation_deg, self.generate.twilight_band_deg
        rule = self.labels.night_below_deg
        if not (low < rule - band and rule + band < high):
            raise ValueError(f"generate.elevation_deg {[low, high]} must lie strictly around labels.night_below_deg "
                             f"+- generate.twilight_band_deg ({rule} +- {band})")
        return self


# -------------------------------------------------------------------- face (data side)

class FaceRender(Section):
    """face.render: the procedural face renderer (components/face/render.py, identities.py)."""
    size: Annotated[int, Field(ge=32, le=256)] = 64  # chip side in pixels, dlib's chip geometry (padding 0.25)
    yaw_std_deg: float = Field(15.0, ge=0.0, le=45.0)
    max_yaw_deg: float = Field(40.0, ge=0.0, le=60.0)
    pitch_std_deg: float = Field(8.0, ge=0.0, le=30.0)  # clipped at twice the spread
    roll_std_deg: float = Field(8.0, ge=0.0, le=45.0)
    expression: Prob = 0.7  # strength of smiles, open mouths, squints and raised brows
    glasses_wearers: Prob = 0.25  # share of identities who usually wear glasses
    glasses_switch: Prob = 0.2  # share of a wearer's images without them (a quarter of that: others with)
    beard_share: Prob = 0.25
    beard_switch: Prob = 0.1
    hairstyle_change: Prob = 0.15
    age_spread_years: float = Field(8.0, ge=0.0, le=30.0)  # an image's age: identity's age +- this
    occlusion: Prob = 0.15
    blur_px: Range = [0.0, 1.2]  # gaussian sigma at 64 px (scaled with size)
    noise_std: Range = [0.0, 0.03]  # share of full scale
    jpeg_share: Prob = 0.7
    jpeg_quality: Range = [30.0, 95.0]
    grey_share: Prob = 0.05
    alignment_jitter: float = Field(0.015, ge=0.0, le=0.1)  # landmark error, in chip template units

    @model_validator(mode="after")
    def _ranges(self):
        for name in ("blur_px", "noise_std", "jpeg_quality"):
            _ordered(name, getattr(self, name))
        if self.blur_px[0] < 0 or self.noise_std[0] < 0 or not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            raise ValueError("blur_px and noise_std must be >= 0, jpeg_quality within [1, 100]")
        return self


class FaceGenerate(Section):
    """face.generate: rendered identities, and user photos under data/raw/faces/<person>/."""
    identities: Annotated[int, Field(ge=3, le=200_000)] = 2000
    images_per_identity: Annotated[list[Annotated[int, Field(ge=2, le=1000)]], Field(min_length=2, max_length=2)] = [10, 20]
    cropped: bool = False  # user photos are already face chips: resize, do not detect
    workers: Annotated[int, Field(ge=0, le=256)] = 0  # rendering processes; 0: one per core

    @model_validator(mode="after")
    def _ordered_counts(self):
        _ordered("images_per_identity", self.images_per_identity)
        return self


class FaceValidation(Section):
    min_images_per_identity: Annotated[int, Field(ge=2)] = 5  # fewer cannot give a K of 4 plus a held-out image
    max_images_ratio: float = Field(4.0, ge=1.0)  # class balance: most images of an identity / fewest
    min_pixel_std: float = Field(2.0, ge=0.0)  # an image flatter than this (0-255 units) is blank


# ------------------------------------------------------------------- face (model side)

class FaceModel(Section):
    """face.model: the encoder (components/face/encoder.py)."""
    kind: Literal["cnn", "dlib_head"] = "cnn"
    image_size: Annotated[int, Field(ge=16, le=256)] = 64  # cnn input: chips are resized to this
    width: Annotated[int, Field(ge=4, le=1024)] = 16  # cnn: first block's channels (doubling); head: hidden units
    depth: Annotated[int, Field(ge=0, le=6)] = 4  # cnn: conv blocks (>= 1); head: hidden layers (0: linear)

    @model_validator(mode="after")
    def _cnn_fits_the_chips(self):
        if self.kind == "cnn" and not (1 <= self.depth and 2 ** self.depth <= self.image_size):
            raise ValueError(f"a cnn needs depth >= 1 and image_size >= 2**depth, got depth {self.depth}, "
                             f"image_size {self.image_size}")
        return self


class FaceTrain(Section):
    """face.train: the triplet-loss trainer (components/face/training.py)."""
    margin: float = Field(0.2, gt=0.0, le=2.0)  # alpha of the triplet loss, on squared distances
    identities_per_batch: Annotated[int, Field(ge=2, le=1024)] = 32  # P
    images_per_identity: Annotated[int, Field(ge=2, le=64)] = 4  # K
    lr: float = Field(1e-3, gt=0.0, le=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    lr_schedule: Literal["constant", "cosine"] = "cosine"  # cosine: a half cosine from lr to 0 at max_epochs
    max_epochs: Annotated[int, Field(ge=1, le=1000)] = 20  # the budget: epochs, never minutes
    patience: Annotated[int, Field(ge=1, le=100)] = 3  # epochs without a better val TAR before stopping
    augment: Prob = 0.5  # augmentation strength (0: none)
    hard_share: Prob = 0.5  # final share of triplets given the hardest negative instead of a semi-hard one
    curriculum_epochs: Annotated[int, Field(ge=1, le=1000)] = 10  # epochs over which hard_share rises from 0
    threads: Annotated[int, Field(ge=0, le=256)] = 0  # 0: one per core (same count, same model)
    precision: Precision = "auto"


class FaceSpace(Section):
    """face.tune.space: choice lists, and [low, high] ranges for margin and lr (log-uniform)."""
    kind: list[Literal["cnn", "dlib_head"]] = Field(["cnn", "dlib_head"], min_length=1)
    margin: Range = [0.1, 0.5]
    identities_per_batch: list[Annotated[int, Field(ge=2, le=1024)]] = Field([16, 32], min_length=1)
    images_per_identity: list[Annotated[int, Field(ge=2, le=64)]] = Field([4, 6], min_length=1)
    lr: Range = [3e-4, 3e-3]
    width: list[Annotated[int, Field(ge=4, le=1024)]] = Field([16, 32], min_length=1)  # cnn; a head gets 8x
    depth: list[Annotated[int, Field(ge=1, le=6)]] = Field([3, 4], min_length=1)  # cnn; a head gets depth - 3 (>= 0)
    augment: Range = [0.0, 1.0]

    @model_validator(mode="after")
    def _ranges(self):
        for name in ("margin", "lr", "augment"):
            low, high = getattr(self, name)
            if not low < high:
                raise ValueError(f"{name} must be [low, high] with low < high, got {[low, high]}")
        if self.margin[0] <= 0 or self.lr[0] <= 0:
            raise ValueError("margin and lr ranges must be > 0")
        return self


class FaceTune(TuneBudget):
    space: FaceSpace = FaceSpace()


class FaceEvaluate(Section):
    """face.evaluate: operating point, verification pairs, identification, slices, plots."""
    target_far: float = Field(1e-3, gt=0.0, lt=1.0)  # the threshold is picked on val at this FAR
    max_same_pairs: Annotated[int, Field(ge=10)] = 20_000  # a seeded sample when there are more
    different_pairs: Annotated[int, Field(ge=1000)] = 50_000  # >= 10/target_far, so the FAR is measurable
    folds: Annotated[int, Field(ge=2, le=100)] = 10  # LFW protocol: threshold on k-1 folds, accuracy on the k-th
    seed: int = 0  # pair sampling and folds
    worst_pairs: Annotated[int, Field(ge=0, le=32)] = 8  # false accepts / rejects shown
    cluster_identities: Annotated[int, Field(ge=2)] = 100  # the "album" clustered: a seeded sample of test people
    # dlib's pretrained encoder (~90 ms per face on one core) is scored on a seeded sample of this many val
    # identities (its threshold) and test identities (its figures, next to ours on the same sample)
    baseline_identities: Annotated[int, Field(ge=2)] = 100


class FaceGate(Section):
    """face.gate: the fixed gate set (stage face-gate_data) and the promotion rule."""
    seed: int = 1  # the gate set's own seed, never the pipeline's
    identities: Annotated[int, Field(ge=10, le=100_000)] = 300
    images_per_identity: Annotated[int, Field(ge=2, le=1000)] = 10
    metric: Literal["tar"] = "tar"  # TAR at target_far on the gate set's pairs
    target_far: float = Field(1e-3, gt=0.0, lt=1.0)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)  # of the Wilson intervals a gain must clear
    target_tar: Prob = 0.95  # the quality floor a champion should reach


class FaceExport(Section):
    """face.export: `cs230 export --face` (components/face_export.py)."""
    calibration_chips: Annotated[int, Field(ge=8, le=100_000)] = 256  # train chips that set int8 activation ranges
    latency_repeats: Annotated[int, Field(ge=1, le=10_000)] = 50  # ms per face: the best of this many runs


class FaceParams(Section):
    seed: int = 0
    render: FaceRender = FaceRender()
    generate: FaceGenerate = FaceGenerate()
    validation: FaceValidation = FaceValidation()
    split: Shares = Shares(train=0.7, val=0.15, test=0.15)
    model: FaceModel = FaceModel()
    train: FaceTrain = FaceTrain()
    tune: FaceTune = FaceTune()
    evaluate: FaceEvaluate = FaceEvaluate()
    gate: FaceGate = FaceGate()
    export: FaceExport = FaceExport()

    @model_validator(mode="after")
    def _searched_cnns_fit_the_chips(self):
        if "cnn" in self.tune.space.kind and 2 ** max(self.tune.space.depth) > self.model.image_size:
            raise ValueError(f"tune.space.depth up to {max(self.tune.space.depth)} needs model.image_size >= "
                             f"{2 ** max(self.tune.space.depth)} (one 2x2 pool per cnn block)")
        return self


# ------------------------------------------------------------------------------ style transfer

class StyleLayers(Section):
    """One feature network's content layer and style layers with their weights w_l."""
    content: str = Field(min_length=1)
    style: dict[str, Annotated[float, Field(ge=0.0)]] = Field(min_length=1)


class StyleNetworkLayers(Section):
    vgg16: StyleLayers = StyleLayers(content="relu3_3", style={"relu1_1": 1.0, "relu2_1": 1.0, "relu3_1": 1.0,
                                                               "relu4_1": 1.0})
    efficientnet_lite0: StyleLayers = StyleLayers(content="block4", style={"stem": 1.0, "block1": 1.0, "block4": 1.0,
                                                                           "block7": 1.0})
    random: StyleLayers = StyleLayers(content="k3", style={"k3": 1.0, "k5": 1.0, "k9": 1.0, "k15": 1.0})


class StyleLoss(Section):
    """alpha, beta and the total-variation weight of the relative perceptual loss (components/style/perceptual.py)."""
    content_weight: float = Field(1.0, ge=0.0)  # alpha
    style_weight: float = Field(10.0, ge=0.0)  # beta
    tv_weight: float = Field(0.0, ge=0.0)


class StyleGatys(Section):
    steps: Annotated[int, Field(ge=1, le=10_000)] = 40  # loss evaluations (L-BFGS: one per step)
    optimizer: Literal["lbfgs", "adam"] = "lbfgs"
    init: Literal["content", "noise"] = "content"
    lbfgs_lr: float = Field(1.0, gt=0.0)
    adam_lr: float = Field(0.02, gt=0.0)


class StyleData(Section):
    styles: list[Literal["swirl", "mosaic", "woodcut"]] = Field(["swirl", "mosaic", "woodcut"], min_length=1)
    content_images: Annotated[int, Field(ge=6, le=100_000)] = 120  # rendered scenes, without user photos
    min_side: Annotated[int, Field(ge=16, le=4096)] = 64  # smaller user images are refused
    min_pixel_std: float = Field(2.0, ge=0.0)  # an image flatter than this (0-255 units) is blank


class StyleModel(Section):
    """The feed-forward transformation network (Johnson et al. 2016)."""
    width: Annotated[int, Field(ge=2, le=128)] = 8  # channels of the first conv; x2, x4 after the downsamplings
    residual_blocks: Annotated[int, Field(ge=0, le=10)] = 3


class StyleTrain(Section):
    """Training the fast network: its own loss weights (beta/alpha with alpha 1), and budget."""
    style_weight: float = Field(6.0, gt=0.0)  # beta of the fast network's loss (alpha = 1)
    style_scale: float = Field(1.0, gt=0.0)  # style layer l's weight w_l times style_scale**l (l = 0, 1, ...)
    tv_weight: float = Field(0.0, ge=0.0)
    lr: float = Field(1e-3, gt=0.0, le=1.0)
    crop_size: Annotated[int, Field(ge=32, le=1024)] = 128  # side of the random training crops (it runs at any size)
    epochs: Annotated[int, Field(ge=1, le=1000)] = 80
    batch_size: Annotated[int, Field(ge=1, le=64)] = 4
    threads: Annotated[int, Field(ge=0, le=64)] = 0  # torch threads; 0: every core
    precision: Precision = "auto"


class StyleSpace(Section):
    style_weight: Range = [3.0, 300.0]  # log-uniform
    style_scale: Range = [0.5, 2.0]  # log-uniform
    tv_weight: Range = [0.0, 1.0]  # uniform
    lr: Range = [3e-4, 3e-3]  # log-uniform
    width: list[Annotated[int, Field(ge=2, le=128)]] = Field([4, 8, 16], min_length=1)


class StyleTune(TuneBudget):
    space: StyleSpace = StyleSpace()


class StyleEvaluation(Section):
    images: Annotated[int, Field(ge=1, le=1000)] = 8  # test content images stylised by both methods
    frontier_weights: list[Annotated[float, Field(gt=0.0)]] = Field([1.0, 10.0, 100.0], min_length=1)


class StyleGate(Section):
    seed: int = 1  # the gate set's own seed (rendered content images)
    images: Annotated[int, Field(ge=2, le=10_000)] = 16
    size: Annotated[int, Field(ge=32, le=1024)] = 128
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    content_tolerance: float = Field(0.05, ge=0.0)  # never promote content distance worse than the champion's by more
    max_content_distance: float = Field(1.0, gt=0.0)  # the quality floor: a champion keeps C's structure


class StyleTransferParams(Section):
    seed: int = 0
    style: str = ""  # the style this run trains (a style image's stem); "": the first present
    image_size: Annotated[int, Field(ge=32, le=4096)] = 256  # side of images stylised (square, centre-cropped)
    max_size: Annotated[int, Field(ge=32, le=4096)] = 1024  # largest --size accepted
    features: Literal["vgg16", "efficientnet_lite0", "random"] = "vgg16"
    pooling: Literal["max", "avg"] = "avg"
    score_features: Literal["vgg16", "efficientnet_lite0", "random"] = "efficientnet_lite0"  # evaluation only
    layers: StyleNetworkLayers = StyleNetworkLayers()
    loss: StyleLoss = StyleLoss()
    gatys: StyleGatys = StyleGatys()
    data: StyleData = StyleData()
    split: Shares = Shares(train=0.7, val=0.15, test=0.15)
    model: StyleModel = StyleModel()
    train: StyleTrain = StyleTrain()
    tune: StyleTune = StyleTune()
    evaluation: StyleEvaluation = StyleEvaluation()
    gate: StyleGate = StyleGate()

    @model_validator(mode="after")
    def _independent_scoring(self):
        if self.score_features == self.features:
            raise ValueError(f"score_features must differ from features ({self.features!r}): "
                             "the evaluation must not be the training loss grading itself")
        if self.image_size > self.max_size:
            raise ValueError(f"image_size {self.image_size} is over max_size {self.max_size}")
        return self


class ServeParams(Section):
    """`cs230 serve`: where it listens and what it accepts (params.yaml explains each key)."""
    host: str = Field("127.0.0.1", min_length=1)
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    max_body_bytes: Annotated[int, Field(ge=1024, le=1 << 30)] = 16_000_000
    max_audio_seconds: float = Field(60.0, gt=0.0, le=3600.0)
    max_concurrent_requests: Annotated[int, Field(ge=1, le=10_000)] = 16
    max_stream_bytes: Annotated[int, Field(ge=1024, le=1 << 34)] = 64_000_000
    max_stream_seconds: float = Field(600.0, gt=0.0, le=86_400.0)
    max_image_pixels: Annotated[int, Field(ge=64 * 64, le=1 << 31)] = 25_000_000
    poll_seconds: float = Field(30.0, ge=0.0)  # 0: no polling, only POST /v1/admin/reload
    inference_threads: Annotated[int, Field(ge=1, le=64)] = 2
    replicas: Annotated[int, Field(ge=1, le=256)] = 1
    replica_cpus: float = Field(1.0, gt=0.0, le=64.0)


class Params(Section):
    trigger_word: TriggerWordParams
    day_night: DayNightParams = DayNightParams()
    face: FaceParams = FaceParams()
    style_transfer: StyleTransferParams = StyleTransferParams()
    serve: ServeParams = ServeParams()


# ---------------------------------------------------------------------------- loading

def _describe(err: dict[str, Any]) -> str:
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    msg = err["msg"].removeprefix("Value error, ")
    got = err.get("input")
    # a whole-section check already quotes the offending value in its message
    return f"{key}: {msg}" if isinstance(got, dict) else f"{key}: {msg} (got {got!r})"


def _allowed_keys(loc: tuple, model: type[BaseModel] = Params) -> list[str]:
    """The keys the schema allows next to an unknown key at `loc`."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            return []
        model = field.annotation
    return sorted(model.model_fields)


def validate_params(raw: Any, source: str = "params.yaml") -> Params:
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        line = f"{source}: {_describe(err)}"
        if err["type"] == "extra_forbidden":
            line += f"; allowed: {', '.join(_allowed_keys(err['loc']))}"
        more = exc.error_count() - 1
        raise ParamsError(line + (f" (+{more} more)" if more else "")) from None


def parse_override(text: str) -> tuple[str, Any]:
    """'a.b.c=VALUE' -> ('a.b.c', VALUE parsed as YAML, so 3 is an int and [1, 2] a list)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ParamsError(f"--set {text!r}: expected KEY=VALUE, e.g. trigger_word.word='hey jarvis'")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return key.strip(), parsed


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """A copy of raw params with each dotted override set; only existing keys may be set."""
    merged = copy.deepcopy(raw)
    for text in overrides:
        key, value = parse_override(text)
        node = merged
        parts = key.split(".")
        for depth, part in enumerate(parts):
            if not isinstance(node, dict):
                raise ParamsError(f"--set {key}: {'.'.join(parts[:depth])} is not a section")
            if depth == len(parts) - 1:
                break
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return merged


def read_raw(path: Path = PARAMS_FILE) -> dict:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ParamsError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ParamsError(f"{path}:{where} not valid YAML ({getattr(exc, 'problem', exc)})") from None


def load_params(path: Path = PARAMS_FILE, overrides: list[str] = ()) -> Params:
    """Read, override and validate params; the only way code gets its configuration."""
    raw = apply_overrides(read_raw(path), list(overrides))
    return validate_params(raw, source=Path(path).name)

"""Every path the project reads or writes, in one place.

Paths are relative to the project root (the folder with dvc.yaml), which is the working
directory of every stage: DVC runs stage commands there, and the `cs230` CLI changes to it.
"""
from pathlib import Path

PARAMS_FILE = Path("params.yaml")
DVC_YAML = Path("dvc.yaml")

RAW_DIR = Path("data/raw")                       # user inputs, tracked by data.dvc
RAW_BACKGROUNDS_DIR = RAW_DIR / "backgrounds"    # background recordings (wav/flac, any rate)
RAW_DAY_NIGHT_DIR = RAW_DIR / "day_night"        # user images in day/ and night/ (any size)
RAW_FACES_DIR = RAW_DIR / "faces"                # user photos in <person>/ folders (any size)

REPORTS_DIR = Path("reports")
MODELS_DIR = Path("models")
TTS_CACHE_DIR = Path(".cache/tts")               # content-addressed TTS renders (speech_bank)
TUNE_CACHE_DIR = Path(".cache/tune")             # Optuna studies: outlive the tune stage's outputs


def pipeline_dir(pipeline: str) -> Path:
    """Generated data of one pipeline: data/<section>/... (trigger-word -> data/trigger_word)."""
    return Path("data") / pipeline.replace("-", "_")


def reports_dir(pipeline: str) -> Path:
    return REPORTS_DIR / pipeline.replace("-", "_")


def models_dir(pipeline: str) -> Path:
    return MODELS_DIR / pipeline.replace("-", "_")


def find_project_root(start: Path | None = None) -> Path | None:
    """The nearest folder at or above `start` holding both dvc.yaml and params.yaml."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / DVC_YAML).is_file() and (folder / PARAMS_FILE).is_file():
            return folder
    return None

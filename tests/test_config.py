"""params.yaml is validated strictly: errors name the key and what is allowed."""
import subprocess
import sys

import pytest

from components.config import ParamsError, load_params
from conftest import PROJECT_ROOT, write_params


def test_project_params_load_with_documented_defaults():
    p = load_params(PROJECT_ROOT / "params.yaml")
    assert p.trigger_word.word == "activate"
    assert p.trigger_word.slug == "activate"
    assert p.trigger_word.speech.held_out_family in p.trigger_word.speech.families


@pytest.mark.parametrize("override, message", [
    ("trigger_word.clips.main=0", "trigger_word.clips.main: Input should be greater than or equal to 10"),
    ("trigger_word.clips.main='300'", "trigger_word.clips.main: Input should be a valid integer"),
    ("trigger_word.clips.p_no_trigger=1.5", "trigger_word.clips.p_no_trigger: Input should be less than or equal to 1"),
    ("trigger_word.clipz.main=5", "trigger_word.clipz: unknown key; allowed: audio, augment, backgrounds, clips"),
    ("trigger_word.clips.snr_db=[30, 0]", "snr_db must be [low, high] with low <= high"),
    ("trigger_word.speech.held_out_family=klingon", "held_out_family 'klingon' must be one of families"),
    ("trigger_word.split.train=0.9", "train + val + test must sum to 1"),
    ("trigger_word.word=act1vate", "trigger_word.word: String should match pattern"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ParamsError) as err:
        load_params(PROJECT_ROOT / "params.yaml", [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_key_in_file(tmp_path):
    path = write_params(tmp_path / "params.yaml", {"clips": {"mian": 3}})
    with pytest.raises(ParamsError, match=r"params.yaml: trigger_word.clips.mian: unknown key; allowed: .*main"):
        load_params(path)


def test_override_sets_dotted_key_and_slug():
    p = load_params(PROJECT_ROOT / "params.yaml", ['trigger_word.word=Hey  Jarvis', "trigger_word.clips.main=40"])
    assert p.trigger_word.word == "Hey  Jarvis" and p.trigger_word.slug == "hey-jarvis"
    assert p.trigger_word.clips.main == 40


def test_malformed_override_and_yaml(tmp_path):
    with pytest.raises(ParamsError, match="expected KEY=VALUE"):
        load_params(PROJECT_ROOT / "params.yaml", ["trigger_word.word"])
    bad = tmp_path / "params.yaml"
    bad.write_text("trigger_word: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)


def test_stage_cli_prints_one_line_and_exits_2(tmp_path):
    path = write_params(tmp_path / "params.yaml", {"clips": {"main": -1}})
    proc = subprocess.run([sys.executable, "-m", "components.split", "trigger-word", "--params", str(path)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: params.yaml: trigger_word.clips.main: Input should be greater than or equal to 10 (got -1)"]

"""test_unseen_voice shares no voice or timbre with training (the default held-out family)."""
import numpy as np

from components.audio import speech_bank, tts
from components.config import load_params
from tests.conftest import PROJECT_ROOT


def test_held_out_family_shares_no_engine_voice_or_timbre_with_training():
    speech = load_params(PROJECT_ROOT / "params.yaml").trigger_word.speech
    speech = speech.model_copy(update={"trigger_renders": 60, "renders_per_negative_word": 2,
                                       "random_negative_words": 10})
    jobs, layout = speech_bank.plan_renders("computer", speech, 5, 2, np.random.default_rng(0))
    unseen = [j.voice for j in jobs if layout.kind(j.group) == "unseen"]
    seen = [j.voice for j in jobs if layout.kind(j.group) != "unseen"]
    assert unseen and seen
    assert {v.family for v in unseen} == {speech.held_out_family}
    # a timbre is the engine voice (espeak accent+variant, or the Piper model), whatever its rate/pitch
    assert not {(v.engine, v.name.split("+")[-1]) for v in unseen} & {(v.engine, v.name.split("+")[-1]) for v in seen}
    assert not {v.engine for v in unseen} & {v.engine for v in seen}  # a whole engine held out
    assert tts.PIPER_FAMILY == speech.held_out_family

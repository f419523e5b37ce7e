"""Window level set on speech frames, the speech mask, and training's room scenes cut like a stream."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_ser import manifest as mf
from edge_ser.errors import ModelError
from edge_ser.model import load_model
from edge_ser.settings import ModelSettings
from edge_ser.speech_level import GAIN_DB, TARGET_DBFS, frame_energy_db, prepare, speech_frames, speech_mask
from edge_ser.windows import cut_windows
from training import scenes
from training.dataset import _windows_of
from training.features import CorpusCache
from training.loaders import Clip

RATE = 16000


def burst_window(level: float = 0.1, seed: int = 0) -> np.ndarray:
    """2 s: 0.6 s quiet, 0.8 s of a voiced-like harmonic burst, 0.6 s quiet (room hiss at -70 dBFS)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(2 * RATE).astype(np.float32) * 3e-4
    t = np.arange(int(0.8 * RATE)) / RATE
    tone = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 6))
    x[int(0.6 * RATE) : int(1.4 * RATE)] += (level * tone / np.sqrt(np.mean(tone**2))).astype(np.float32)
    return x


def test_mask_marks_the_burst_and_not_the_pauses():
    prepared = prepare(burst_window())
    assert prepared.speech.shape == (100,)  # 20 ms frames: the Whisper encoder's output frames
    assert prepared.speech[32:68].all()  # 0.64-1.36 s, inside the burst
    assert not prepared.speech[:29].any() and not prepared.speech[71:].any()


def test_level_is_set_on_the_speech_frames_only():
    x = burst_window(level=0.01)
    p = prepare(x)
    speech = p.samples[int(0.65 * RATE) : int(1.35 * RATE)]
    level = 10 * np.log10(np.mean(speech.astype(np.float64) ** 2))
    assert level == pytest.approx(TARGET_DBFS, abs=0.5)  # the pauses do not dilute the level
    assert p.gain_db == pytest.approx(TARGET_DBFS - 20 * np.log10(0.01), abs=0.5)


@settings(max_examples=40, deadline=None)
@given(st.floats(-20.0, 10.0))
def test_a_window_sounds_the_same_at_any_distance(gain_db):
    """Within the gain bounds the prepared window does not depend on the input level."""
    x = burst_window(level=0.05)
    a, b = prepare(x), prepare(x * np.float32(10 ** (gain_db / 20)))
    np.testing.assert_allclose(a.samples, b.samples, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(a.speech, b.speech)


def test_gain_is_bounded_for_silence_and_for_clipping_input():
    quiet = prepare(np.full(2 * RATE, 1e-6, np.float32))
    assert quiet.gain_db == GAIN_DB[1]
    assert np.abs(quiet.samples).max() < 1e-4  # a silent room is not lifted to speech level
    loud = prepare(np.sign(np.sin(np.arange(2 * RATE) / 7.0)).astype(np.float32))
    assert loud.gain_db == GAIN_DB[0]  # full scale needs -23 dB; at most -20 dB is applied


def test_noise_only_window_pools_every_frame():
    noise = np.random.default_rng(1).standard_normal(2 * RATE).astype(np.float32) * 0.05
    assert prepare(noise).speech.all()


def test_speech_frames_stretches_the_mask_to_the_backbone_frames():
    mask = np.zeros(100, bool)
    mask[50:] = True
    states = np.arange(2 * 50 * 3, dtype=np.float32).reshape(2, 50, 3)
    picked = speech_frames(states, mask)
    assert picked.shape == (2, 25, 3)
    np.testing.assert_array_equal(picked, states[:, 25:, :])
    assert speech_frames(states, np.zeros(100, bool)).shape == states.shape  # nothing marked: all


def test_frame_energy_and_mask_reject_nonsense():
    with pytest.raises(ValueError):
        frame_energy_db(np.zeros(10, np.float32), 20)
    e = np.full(50, -40.0, np.float32)
    assert speech_mask(e).all()  # a flat window: nothing stands out, every frame counts


# -- the daemon runs it for a model that declares it ----------------------------------------------------

def test_manifest_refuses_an_unknown_window_level(tmp_path):
    entry = {"labels": ["anger_disgust", "fear_surprise", "happiness", "sadness"],
             "head": {"file": "h.onnx", "sha256": "0" * 64}, "window_level": "loudest"}
    with pytest.raises(ModelError, match="window_level"):
        mf.parse_entry("m", entry)
    with pytest.raises(ModelError, match="window_level.*backbone"):
        mf.parse_entry("m", dict(entry, window_level="speech"))


def test_a_speech_level_model_answers_the_same_near_and_far():
    """The shipped Whisper model with window_level speech: 20 dB quieter, the same probabilities."""
    model = load_model(ModelSettings(id="whisper-l23-mlp-allplus-fp16"))
    model.entry = dataclasses.replace(model.entry, window_level="speech")
    x = burst_window(level=0.1)
    near, far = model.predict(x).probs, model.predict(x * np.float32(0.1)).probs
    assert near == pytest.approx(far, abs=2e-3)


# -- training's room copies ----------------------------------------------------------------------------

def test_scene_is_a_pure_function_of_clip_and_copy():
    speech = burst_window(level=0.1)[int(0.6 * RATE) : int(1.4 * RATE)]
    a, b = scenes.make_scene(speech, "x/a.wav", 3), scenes.make_scene(speech, "x/a.wav", 3)
    np.testing.assert_array_equal(a.audio, b.audio)
    assert a.condition == b.condition
    other = scenes.make_scene(speech, "x/a.wav", 4)
    assert other.condition != a.condition or not np.array_equal(other.audio, a.audio)
    s0, s1 = a.speech
    assert s1 - s0 == len(speech) and 0 <= s0 <= scenes.PAUSE_S[1] * RATE


def _speaker_clips(tmp_path, corpus: str) -> list[Clip]:
    """Three clips of each SAVEE speaker, the held-out test speaker (DC, fold 0) ten times louder."""
    import soundfile as sf

    out = []
    for spk in ("DC", "JE", "JK", "KL"):
        for i in range(3):
            path = tmp_path / f"{spk}{i}.wav"
            sf.write(path, burst_window(level=0.5 if spk == "DC" else 0.05, seed=i), RATE)
            out.append(Clip(str(path), corpus, f"{corpus}:{spk}", "angry", "anger", "en"))
    return out


def test_babble_is_made_of_training_speakers_only(tmp_path):
    clips = _speaker_clips(tmp_path, "savee")
    pool = scenes.babble_pool(clips, "savee")
    assert len(pool) == 9  # JE, JK, KL: the speaker-independent split's training speakers
    assert max(float(np.sqrt(np.mean(x**2))) for x in pool) < 0.1
    np.testing.assert_array_equal(scenes.babble_pool(clips, "savee")[0], pool[0])
    assert scenes.babble_pool(_speaker_clips(tmp_path, "mine"), "mine") == ()  # no split: no babble


def test_room_copies_never_hold_babble_and_babble_copies_draw_it_from_their_pool():
    speech = burst_window(level=0.1)[int(0.6 * RATE) : int(1.4 * RATE)]
    pool = (burst_window(level=0.05, seed=1), burst_window(level=0.05, seed=2))
    babble = [scenes.make_scene(speech, "x/a.wav", k, pool).condition for k in range(1, 40)]
    room = [scenes.make_scene(speech, "x/a.wav", k).condition for k in range(1, 40)]
    no_pool = [scenes.make_scene(speech, "x/a.wav", k, ()).condition for k in range(1, 40)]
    assert any("babble" in c for c in babble)
    assert not any("babble" in c for c in room + no_pool)


def test_talk_copies_always_hold_babble_behind_the_utterance():
    speech = burst_window(level=0.1)[int(0.6 * RATE) : int(1.4 * RATE)]
    pool = (burst_window(level=0.05, seed=1), burst_window(level=0.05, seed=2))
    talk = [scenes.make_scene(speech, "x/a.wav", k, pool, "talk") for k in range(1, 20)]
    assert all("babble" in t.condition for t in talk)
    with_pause = [t for t in talk if t.speech[0] > RATE // 10]
    assert with_pause and all(float(np.abs(t.audio[: t.speech[0]]).max()) > 0 for t in with_pause)
    no_pool = [scenes.make_scene(speech, "x/a.wav", k, (), "talk").condition for k in range(1, 20)]
    assert not any("babble" in c for c in no_pool)
    assert all(("pink" in c) or ("household" in c) for c in no_pool)
    same = scenes.make_scene(speech, "x/a.wav", 3, pool)  # a babble copy is the babble family's draw
    np.testing.assert_array_equal(same.audio, scenes.make_scene(speech, "x/a.wav", 3, pool, "babble").audio)


def test_living_copies_are_talk_copies_that_are_always_reverberant():
    speech = burst_window(level=0.1)[int(0.6 * RATE) : int(1.4 * RATE)]
    pool = (burst_window(level=0.05, seed=1), burst_window(level=0.05, seed=2))
    living = [scenes.make_scene(speech, "x/a.wav", k, pool, "living").condition for k in range(1, 12)]
    assert all(c.startswith("rt60-") and "babble" in c for c in living)
    talk = [scenes.make_scene(speech, "x/a.wav", k, pool, "talk").condition for k in range(1, 12)]
    assert not all(c.startswith("rt60-") for c in talk)


def test_cache_variants_name_their_scene_family():
    assert scenes.scene_of("room1") == ("room", 1) and scenes.scene_of("babble12") == ("babble", 12)
    assert scenes.scene_of("talk2") == ("talk", 2) and scenes.scene_of("living1") == ("living", 1)
    assert scenes.scene_of("base") is None and scenes.scene_of("aug1") is None
    assert scenes.scene_of("roomy") is None


def test_scene_windows_are_the_daemons_and_coverage_adds_up():
    audio = np.zeros(5 * RATE + 9600, np.float32)
    span = (int(1.7 * RATE), int(3.2 * RATE))
    wins, covered = scenes.cut_with_coverage(audio, span)
    np.testing.assert_array_equal(wins, cut_windows(audio, 2 * RATE, RATE))
    # windows [0,2) [1,3) [2,4) [3,5) + the tail [3.6, 5.6): seconds of 1.7-3.2 s in each
    np.testing.assert_allclose(covered, [0.3, 1.3, 1.2, 0.2, 0.0], atol=1e-4)
    P, S, U = scenes.PAUSE, scenes.SPEECH, scenes.UNSURE
    assert scenes.window_roles(covered, 1.5).tolist() == [U, S, S, P, P]


def test_short_scene_is_one_centred_window_covering_the_utterance():
    wins, covered = scenes.cut_with_coverage(np.ones(RATE, np.float32), (2000, 9000))
    assert wins.shape == (1, 2 * RATE) and covered.tolist() == [pytest.approx(7000 / RATE)]
    assert scenes.window_roles(covered, 7000 / RATE).tolist() == [scenes.SPEECH]  # 80 % of it suffices


def test_pause_windows_of_a_room_copy_train_as_neutral():
    clip = Clip(path="c/a.wav", corpus="c", speaker="s1", label="sad", merged="sadness", language="en")
    frames = np.zeros((5, 2, 8), np.float16)
    covered = np.array([[0.2, 0.2], [1.5, 1.5], [2.0, 2.0], [0.1, 0.1], [0.4, 0.4]], np.float16)
    store = CorpusCache(frames, covered, {"c/a.wav": (0, 5)})  # the 0.4 s window is left out
    lab = {"sadness": 0, "neutral": 1}
    groups = _windows_of([clip], store, "room1", "merged", lab)
    assert [(g[1], g[2], g[3]) for g in groups] == [(0, [1, 2], "c/a.wav"), (1, [0, 3], "c/a.wav#pause")]
    assert _windows_of([clip], store, "base", "merged", lab) == [(clip, 0, [0, 1, 2, 3, 4], "c/a.wav")]
    assert [g[1] for g in _windows_of([clip], store, "room1", "merged", {"sadness": 0})] == [0]


def test_a_foreground_head_learns_speech_of_any_label_against_pauses():
    from edge_ser.labels import FOREGROUND_LABELS
    from training.dataset import label_set

    neutral = Clip(path="c/n.wav", corpus="c", speaker="s1", label="neutral", merged="neutral", language="en")
    unmapped = Clip(path="c/u.wav", corpus="c", speaker="s1", label="boredom", merged=None, language="en")
    covered = np.array([[1.5, 1.5], [0.1, 0.1], [1.5, 1.5], [0.0, 0.0]], np.float16)
    store = CorpusCache(np.zeros((4, 2, 8), np.float16), covered, {"c/n.wav": (0, 2), "c/u.wav": (2, 2)})
    labels = label_set([neutral, unmapped], "foreground")
    assert labels == FOREGROUND_LABELS
    lab = {name: i for i, name in enumerate(labels)}
    groups = _windows_of([neutral, unmapped], store, "talk1", "foreground", lab)
    # neutral speech is a foreground talker too; a pause is neutral whoever spoke around it
    assert [(g[1], g[2]) for g in groups] == [(0, [0]), (1, [1]), (0, [2]), (1, [3])]
    assert [(g[1], g[2]) for g in _windows_of([neutral], store, "base", "foreground", lab)] == [(0, [0, 1])]


def test_a_foreground_run_needs_room_copies():
    from edge_ser.errors import UserError
    from training import experiment

    with pytest.raises(UserError, match="--room"):
        experiment.run("speaker_independent", "tess", classes="foreground", room=0)


def test_state_rows_follow_the_cache_layout():
    from edge_ser.errors import UserError
    from training.dataset import state_rows

    speech = {"states": [2, 3], "window_level": "speech"}
    assert state_rows((2, 3), speech, 4) == [2, 3]  # the speech-frame rows, after the all-frame ones
    assert state_rows((3,), {"states": [2, 3]}, 2) == [1]
    assert state_rows((1, 2), {}, 5) == [1, 2]  # every state from 0, as `--layers all` exports
    with pytest.raises(UserError, match="not \\[4\\]"):
        state_rows((4,), speech, 4)


def test_a_cache_of_another_encoder_or_level_is_refused(tmp_path):
    from edge_ser.errors import UserError
    from training.features import cache_layout
    from training.whisper_states import mark_cache

    mark_cache(tmp_path, "whisper-tiny.en", tmp_path / "a.onnx", "speech", (2, 3))
    mark_cache(tmp_path, "whisper-tiny.en", tmp_path / "a.onnx", "speech")  # resuming: kept as it is
    assert cache_layout(tmp_path)["states"] == [2, 3]
    with pytest.raises(UserError, match="window_level"):
        mark_cache(tmp_path, "whisper-tiny.en", tmp_path / "a.onnx", "raw")
    with pytest.raises(UserError, match="encoder"):
        mark_cache(tmp_path, "whisper-tiny.en", tmp_path / "b.onnx", "speech")

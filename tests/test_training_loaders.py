"""Corpus loaders: real corpora under ../shared/corpora, and SUBESCO on synthetic files."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edge_ser.errors import UserError
from edge_ser.labels import EMOTIONS, NEUTRAL
from tests.conftest import SHARED
from training import loaders

ROOT = SHARED / "corpora"

pytestmark = pytest.mark.needs_shared

EXPECTED = {  # corpus: (files, speakers, language), from ../shared/corpora/README.md
    "tess": (2800, 2, "en"), "ravdess": (1440, 24, "en"), "savee": (480, 4, "en"),
    "crema-d": (7442, 91, "en"), "banglaser": (1466, 34, "bn"), "nemo": (4481, 9, "pl"),
    "turev-db": (1735, 6, "tr"), "ased": (2474, 65, "am"),
}


@pytest.mark.parametrize("corpus", sorted(EXPECTED))
def test_real_corpus_counts_and_labels(corpus):
    clips = loaders.load_corpus(corpus, ROOT)
    files, speakers, lang = EXPECTED[corpus]
    assert len(clips) == files
    assert len({c.speaker for c in clips}) == speakers
    assert {c.language for c in clips} == {lang}
    assert all(c.merged in (*EMOTIONS, NEUTRAL) for c in clips)
    assert all(c.speaker.startswith(corpus + ":") for c in clips)


def test_label_rules_follow_the_corpora_readme():
    by = {Path(c.path).name: c for c in loaders.load_corpus("ravdess", ROOT)}
    c = by["03-01-02-01-02-01-17.opus"] if "03-01-02-01-02-01-17.opus" in by else None
    assert c is not None and c.label == "calm" and c.merged == NEUTRAL and c.speaker == "ravdess:17"
    tess = [c for c in loaders.load_corpus("tess", ROOT) if c.path.endswith("_ps.opus")]
    assert tess and all(c.merged == "fear_surprise" for c in tess)
    savee = {(Path(c.path).parent.name, Path(c.path).stem): c for c in loaders.load_corpus("savee", ROOT)}
    assert savee[("DC", "su14")].merged == "fear_surprise" and savee[("DC", "sa01")].merged == "sadness"
    turev = loaders.load_corpus("turev-db", ROOT)
    assert {c.label for c in turev} == {"angry", "calm", "happy", "sad"}
    nemo = {c.label for c in loaders.load_corpus("nemo", ROOT)}
    assert "surprise" in nemo and "fear" in nemo


def test_sets_expand_to_present_corpora():
    assert loaders.expand(["all"], ROOT) == ["tess", "ravdess", "savee", "crema-d", "banglaser"]
    assert len(loaders.expand(["all+"], ROOT)) == 8
    with pytest.raises(UserError):
        loaders.expand(["klingon"], ROOT)


def _wav(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(1600, dtype=np.float32), 16000)


def test_subesco_synthetic(tmp_path):
    root = tmp_path / "corpora"
    names = ["F_02_MONIKA_S_1_ANGRY_5.wav", "F_02_MONIKA_S_3_SURPRISE_1.wav",
             "M_07_RAHIM_S_10_NEUTRAL_2.wav", "M_07_RAHIM_S_2_DISGUST_4.wav", "notes.txt"]
    for n in names:
        _wav(root / "subesco" / n) if n.endswith(".wav") else (root / "subesco" / n).write_text("x")
    clips = {Path(c.path).name: c for c in loaders.load_corpus("subesco", root)}
    assert len(clips) == 4
    a = clips["F_02_MONIKA_S_1_ANGRY_5.wav"]
    assert (a.corpus, a.speaker, a.label, a.merged, a.language) == ("subesco", "subesco:F_02", "angry",
                                                                     "anger_disgust", "bn")
    assert clips["F_02_MONIKA_S_3_SURPRISE_1.wav"].merged == "fear_surprise"
    assert clips["M_07_RAHIM_S_10_NEUTRAL_2.wav"].merged == NEUTRAL
    assert loaders.expand(["bengali"], root) == ["subesco"]


def test_generic_folder_and_csv(tmp_path):
    for lab in ("Angry", "sad", "calm"):
        _wav(tmp_path / "mine" / lab / "a.wav")
    clips = loaders.load_folder(tmp_path / "mine")
    assert sorted(c.merged for c in clips) == ["anger_disgust", "neutral", "sadness"]
    (tmp_path / "list.csv").write_text("path,label,speaker\n"
                                       "mine/sad/a.wav,sadness,bob\nmine/Angry/a.wav,ANG,\n")
    rows = loaders.load_csv(tmp_path / "list.csv")
    assert [(c.merged, c.speaker) for c in rows] == [("sadness", "custom:bob"), ("anger_disgust", "custom:a")]
    (tmp_path / "bad.csv").write_text("file,emotion\nx.wav,sad\n")
    with pytest.raises(UserError, match="header"):
        loaders.load_csv(tmp_path / "bad.csv")
    with pytest.raises(UserError):
        loaders.load_folder(tmp_path / "missing")

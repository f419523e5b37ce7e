"""Training cuts clips with the daemon's windower: the same windows in training and in `classify`."""

from __future__ import annotations

import numpy as np

from edge_ser.windows import Windower, cut_windows
from training.preprocess import windows


def _daemon_windows(x: np.ndarray, win: int, hop: int, block: int) -> np.ndarray:
    w = Windower(win, hop)
    out = [o.samples for i in range(0, len(x), block) for o in w.push(x[i:i + block])]
    tail = w.flush()
    return np.stack(out + ([tail.samples] if tail is not None else []))


def test_a_short_clip_is_centred_alike_in_training_and_serving() -> None:
    clip = np.linspace(0.1, 0.9, 21000, dtype=np.float32)  # 1.3 s
    ours = windows(clip)
    assert ours.shape == (1, 32000)
    assert np.array_equal(ours, _daemon_windows(clip, 32000, 16000, 1024))
    off = (32000 - 21000) // 2
    assert np.array_equal(ours[0, off:off + 21000], clip) and not ours[0, :off].any()


def test_a_long_clip_gets_the_daemons_windows_whatever_the_block_size() -> None:
    clip = np.random.default_rng(1).standard_normal(16000 * 5 + 9000).astype(np.float32)
    ours = windows(clip)
    for block in (160, 4000, 50000):
        assert np.array_equal(ours, _daemon_windows(clip, 32000, 16000, block))
    assert np.array_equal(ours[-1], clip[-32000:])  # the 0.56 s tail gets a window aligned to the end


def test_cut_windows_of_nothing_is_empty() -> None:
    assert cut_windows(np.zeros(0, np.float32), 8, 4).shape == (0, 8)

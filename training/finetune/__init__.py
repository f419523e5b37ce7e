"""Fine-tune YAMNet's top for speech emotion, within a 2-core CPU budget.

Modules: cache (the frozen trunk's cached output), model (the trained top and its data), train (one
run), export (the run as a TFLite file, a backbone, embeddings, parity), jobs (a plan of runs and
their records), cli (`python -m training finetune ...`).

    # 1. cache the frozen trunk's output once per clip window (resumable; base = every 2 s window
    #    of every clip; augN = one augmented window per clip); --max-per-corpus N for a subset
    python -m training finetune cache --variant base
    python -m training finetune cache --variant aug1
    # 2. one training run (checkpoint every epoch; rerunning the same command resumes it), or the
    #    whole plan (training/ft_plan.json), then the records and the one-file export
    python -m training finetune train --protocol speaker_independent --corpus all+ \
        --out runs/yamnet-ft/si-all+
    python -m training finetune jobs --parallel 2
    python -m training finetune report --append-to bench/results/accuracy.json
    python -m training finetune export --run runs/yamnet-ft/si-all+ --register

What is trained: YAMNet's last pointwise convolution (layer 14, 1024x1024, a third of the
backbone's weights) through a rank-64 update plus a bias shift (LoRA: W + up @ down, up starting
at zero, so training starts exactly at YAMNet), and two linear heads on the window's mean
embedding: the 4 emotions + neutral ("merged") and the original labels of the training corpora
(auxiliary task, loss weight 0.5). Everything below (frontend, layers 1-13, layer 14's depthwise
conv) is frozen and computed by the original yamnet.tflite cut at that point
(training/yamnet_tflite.py) from the rebuild's log-mel patches (training/yamnet_model.py,
INT8-mel mode), so the exported file (the same graph with the merged weights) computes what was
trained. Why not end to end: on this shared 2-core CPU, one training step of layer
14 alone took 22 ms per 2 s window (measured); with the frozen product W x cached, a low-rank
step costs about 15x fewer multiplications and a whole run takes minutes.

Training sample = one 2 s window of a trimmed clip, as the daemon sees it:
- base copy: any of the clip's 2 s / 1 s-hop windows (training.preprocess.windows);
- augmented copy (training.augment.augment: pitch +-3 semitones, time shift, noise 10-30 dB SNR,
  gain), one random window, with SpecAugment on its log-mel patches (2 frequency masks of
  <= 8 bands, 2 time masks of <= 12 frames), all seeded by clip path and copy;
- harmonic-mean class balancing (each merged class drawn H times per epoch, H = harmonic mean of
  the class clip counts), label smoothing 0.1, dropout 0.3;
- discriminative learning rates: heads 1e-3, the conv's update 5e-4 (0 during a first head-only
  warm-up epoch), cosine decay; early stopping on validation UAR (merged, clip level);
- `--freeze` keeps the conv at YAMNet's weights: the same recipe as a linear probe on frozen
  embeddings, the control that says what fine-tuning itself adds.
Evaluation is clip level as in training/evaluate.py: window probabilities averaged per clip.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TFLITE = REPO.parent / "shared" / "weights" / "yamnet" / "yamnet.tflite"
DEFAULT_CACHE = REPO / "cache" / "yamnet_ft"

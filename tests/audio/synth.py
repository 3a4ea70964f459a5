"""Small synthetic audio folders for the data-module, task and CLI tests (tones per class)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile

CLASSES = ("low", "mid", "high")
FREQS = {"low": 220.0, "mid": 880.0, "high": 3000.0}


def tone(freq: float, sr: int, seconds: float, channels: int, seed: int) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    rng = np.random.default_rng(seed)
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
    return np.stack([x] * channels, axis=1).astype(np.float32)


def make_folder(root: Path, per_class: int = 4, with_csv: bool = True) -> Path:
    """``root`` with ``{label}_{speaker}_{take}.wav`` / ``.flac`` files at 8, 22.05 and 44.1 kHz, mono and stereo,
    and ``labels.csv`` (file, label, split: take 0 -> test, take 1 -> val, others train)."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    rates = (8000, 22050, 44100)
    for ci, label in enumerate(CLASSES):
        for take in range(per_class):
            sr, channels = rates[take % 3], 1 + take % 2
            ext = "flac" if take % 2 else "wav"
            name = f"{label}_s{take % 2}_{take}.{ext}"
            soundfile.write(root / name, tone(FREQS[label], sr, 0.3 + 0.1 * take, channels, 10 * ci + take), sr)
            split = "test" if take == 0 else "val" if take == 1 else "train"
            rows.append({"file": name, "label": label, "split": split})
    if with_csv:
        with open(root / "labels.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["file", "label", "split"])
            w.writeheader()
            w.writerows(rows)
    return root

"""The GPU training scripts of the audio and medical results run end to end in their CPU smoke modes
(tiny models, a few steps), so that a change to the tasks they drive cannot break them unseen."""
from __future__ import annotations

import json

from benchmarks.train_audio_gpu import main as audio_main
from benchmarks.train_medical_gpu import main as medical_main
from tests.helpers import shared_path


def test_train_medical_quick_cpu(tmp_path):
    root = shared_path("data")
    assert medical_main(["--quick", "--device", "cpu", "--workers", "0", "--data-root", str(root),
                         "--intensity-aug", "0.5", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    for key in ("a_scratch", "b_membrane_2d", "c_pretrain", "c_pretrained_same_total_budget"):
        assert key in result, key
    assert 0.0 <= result["a_scratch"]["dice_test"]["mean"] <= 1.0 and result["intensity_aug"] == 0.5
    assert result["c_pretrained_same_total_budget"]["loaded_encoder_tensors"] > 0


def test_train_audio_phases_quick_cpu(tmp_path):
    root = shared_path("data", "audio")
    a, b = tmp_path / "a", tmp_path / "b"
    assert audio_main(["--quick", "--device", "cpu", "--workers", "0", "--data-root", str(root), "--phases",
                       "pretrain,finetune", "--out", str(a)]) == 0
    ckpt = a / "ssamba_tiny_fsdd_pretrained.ckpt"
    assert audio_main(["--quick", "--device", "cpu", "--workers", "0", "--data-root", str(root), "--phases",
                       "scratch,sonic", "--pretrained", str(ckpt), "--out", str(b)]) == 0
    first, second = (json.loads((d / "results.json").read_text()) for d in (a, b))
    assert first["fsdd_finetuned"]["pretrained"] and not second["fsdd_scratch"]["pretrained"]
    assert second["sonic_pi"]["majority_baseline_acc"] > 0 and (b / "ssamba_tiny_fsdd_scratch.pt").exists()

"""``ssm-apps audio stats`` (ssm_apps.audio.cli.main)."""
from __future__ import annotations

import json

import torch

from ssm_apps.audio import fbank_features, load_audio
from ssm_apps.audio.cli import main
from tests.audio.synth import make_folder


def test_stats_equal_an_oracle(tmp_path, capsys) -> None:
    root = make_folder(tmp_path / "tones", per_class=2, with_csv=False)
    out = tmp_path / "stats.json"
    assert main(["stats", "--data", str(root), "--target-length", "48", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    feats = torch.stack([fbank_features(*load_audio(p), 48, None, None) for p in sorted(root.iterdir())]).double()
    assert result["files"] == 6
    assert abs(result["mean"] - feats.mean().item()) < 1e-6
    assert abs(result["std"] - feats.std(unbiased=False).item()) < 1e-5
    assert "mean" in capsys.readouterr().out


def test_stats_errors(tmp_path, capsys) -> None:
    assert main(["stats", "--data", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["stats", "--data", str(tmp_path / "empty")]) == 1
    assert "no audio files" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    assert main(["stats", "--data", str(bad)]) == 1
    assert "x.wav" in capsys.readouterr().err

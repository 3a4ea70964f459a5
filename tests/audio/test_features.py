"""fbank_features against the SSAMBA fixture's stored waveform -> fbank, and audio reading."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch

from ssm_apps.audio import NORM_STATS, fbank_features, load_audio, norm_stats, to_mono_16k
from tests.helpers import load_fixture, shared_path

SC_MEAN, SC_STD = -6.845978, 5.5654526


@pytest.fixture(scope="module")
def fixture() -> dict:
    return load_fixture("ssamba_finetune_public.pt")


def test_presets_are_the_recipes_values() -> None:
    assert NORM_STATS["audioset"] == NORM_STATS["librispeech"] == (-4.2677393, 4.5689974)
    assert norm_stats("esc50") == (-6.6268077, 5.358466)
    assert norm_stats("speechcommands") == (SC_MEAN, SC_STD)
    with pytest.raises(ValueError, match="unknown normalisation preset"):
        norm_stats("timit")


def test_fbank_matches_official_dataloader(fixture: dict) -> None:
    wav = fixture["input"]["waveform_16k_sample0"]
    ours = fbank_features(wav, 16_000, 128, SC_MEAN, SC_STD)
    ref = fixture["outputs"]["fbank_sample0"]
    assert ours.shape == (128, 128)
    assert (ours - ref).abs().max() <= 1e-4
    assert torch.equal(ref, fixture["input"]["fbank"][0])


def test_fbank_from_the_8khz_file(fixture: dict) -> None:
    """Reading the original 8 kHz FSDD clip and resampling inside fbank_features gives the same features."""
    wav, sr = load_audio(shared_path("data", "audio", "fsdd", "7_jackson_0.wav"))
    assert sr == 8000 and wav.shape == (1, 3457)
    assert (to_mono_16k(wav, sr) - fixture["input"]["waveform_16k_sample0"]).abs().max() <= 1e-6
    diff = (fbank_features(wav, sr, 128, SC_MEAN, SC_STD) - fixture["outputs"]["fbank_sample0"]).abs()
    # the 4e-8 resampling differences move a few near-silent log-mel bins by ~1e-4
    assert diff.max() <= 5e-4 and diff.mean() <= 1e-6


def test_channels_are_averaged_and_crop_pad() -> None:
    torch.manual_seed(0)
    wav = 0.1 * torch.randn(8000)
    mono = fbank_features(wav, 16_000, 100, None, None)
    stereo = fbank_features(torch.stack([wav, wav]), 16_000, 100, None, None)
    assert torch.allclose(mono, stereo, atol=1e-6)
    # 0.5 s = 48 frames of 25 ms every 10 ms -> rows 48.. are zero padding; cropping keeps the first rows
    assert mono[48:].abs().max() == 0 and mono[47].abs().max() > 0
    assert torch.equal(fbank_features(wav, 16_000, 20, None, None), mono[:20])
    normed = fbank_features(wav, 16_000, 100, -5.0, 2.0)
    assert torch.allclose(normed, (mono + 5.0) / 4.0, atol=1e-6)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="too short"):
        fbank_features(torch.zeros(100), 16_000, 10, None, None)
    with pytest.raises(ValueError, match="'mean' and 'std'"):
        fbank_features(torch.zeros(1000), 16_000, 10, 1.0, None)
    with pytest.raises(ValueError, match="'waveform'"):
        fbank_features(torch.zeros(1, 1, 1000), 16_000, 10, None, None)


def test_load_flac_stereo_44k() -> None:
    wav, sr = load_audio(shared_path("data", "audio", "sonic_pi", "ambi_choir.flac"))
    assert sr == 44_100 and wav.shape[0] == 2 and wav.dtype == torch.float32
    assert fbank_features(wav, sr, 64, -5.0, 4.0).shape == (64, 128)


def test_bad_files_are_named(tmp_path) -> None:
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(ValueError, match="broken.wav"):
        load_audio(broken)
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros((0,), dtype=np.float32), 8000)
    with pytest.raises(ValueError, match="empty.wav.*zero length"):
        load_audio(empty)

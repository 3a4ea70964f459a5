"""Audio reading and the SSAST / SSAMBA log-mel filterbank features.

The features are those of SSAST's and SSAMBA's data loaders (evaluation mode): the waveform,
resampled to 16 kHz with ``torchaudio.functional.resample``, has its mean removed; Kaldi filterbanks
(``torchaudio.compliance.kaldi.fbank``: HTK-compatible, 128 mel bins, Hanning window of 25 ms every
10 ms, no dither, no energy term) are zero-padded or cropped to ``target_length`` frames and normalised
as ``(fbank - mean) / (2 * std)``.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

SAMPLE_RATE = 16_000
NUM_MEL_BINS = 128
FRAME_LENGTH_MS = 25.0
FRAME_SHIFT_MS = 10.0

#: Normalisation statistics (mean, std) of the log-mel features that the SSAST / SSAMBA recipes use.
NORM_STATS: dict[str, tuple[float, float]] = {
    "audioset": (-4.2677393, 4.5689974),
    "librispeech": (-4.2677393, 4.5689974),
    "esc50": (-6.6268077, 5.358466),
    "speechcommands": (-6.845978, 5.5654526),
}


def norm_stats(preset: str) -> tuple[float, float]:
    """(mean, std) of a named preset (see :data:`NORM_STATS`)."""
    if preset not in NORM_STATS:
        raise ValueError(f"unknown normalisation preset {preset!r}; expected one of {sorted(NORM_STATS)}")
    return NORM_STATS[preset]


def load_audio(path: str | Path) -> tuple[torch.Tensor, int]:
    """Read a WAV / FLAC / OGG file (anything libsndfile reads) with ``soundfile``.

    Args:
        path: the audio file.

    Returns:
        ``(waveform, sample_rate)``: float32 (channels, samples) in [-1, 1], and the file's sample rate.

    Raises:
        ValueError: naming the file when it cannot be read, holds no samples or non-finite values.
    """
    import soundfile

    try:
        data, sample_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # libsndfile raises its own error types (and RuntimeError / TypeError)
        raise ValueError(f"cannot read audio file {str(path)!r}: {err}") from err
    waveform = torch.from_numpy(data.T.copy())
    if waveform.shape[1] == 0:
        raise ValueError(f"audio file {str(path)!r} holds no samples (zero length)")
    if not torch.isfinite(waveform).all():
        raise ValueError(f"audio file {str(path)!r} holds non-finite samples (corrupt)")
    return waveform, int(sample_rate)


def to_mono_16k(waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Down-mix (mean over channels) and resample to 16 kHz.

    Args:
        waveform: (samples,) or (channels, samples).
        sample_rate: its sample rate in Hz.

    Returns:
        (samples_16k,) float32.
    """
    if waveform.dim() == 2:
        waveform = waveform.mean(dim=0)
    elif waveform.dim() != 1:
        raise ValueError(f"argument 'waveform' must be (samples,) or (channels, samples); got {tuple(waveform.shape)}")
    if sample_rate <= 0:
        raise ValueError(f"argument 'sample_rate' must be positive; got {sample_rate}")
    waveform = waveform.float()
    if sample_rate != SAMPLE_RATE:
        waveform = _resampler(sample_rate)(waveform)
    return waveform


@lru_cache(maxsize=8)
def _resampler(sample_rate: int) -> torch.nn.Module:
    """``torchaudio.transforms.Resample`` to 16 kHz with the defaults of ``torchaudio.functional.resample``
    (the same kernel, built once per input rate)."""
    import torchaudio

    return torchaudio.transforms.Resample(sample_rate, SAMPLE_RATE)


def fbank_features(
    waveform: torch.Tensor,
    sample_rate: int,
    target_length: int,
    mean: float | None,
    std: float | None,
    num_mel_bins: int = NUM_MEL_BINS,
) -> torch.Tensor:
    """SSAST / SSAMBA input features of one clip.

    Args:
        waveform: (samples,) or (channels, samples); several channels are averaged.
        sample_rate: sample rate of ``waveform`` in Hz; anything else than 16 kHz is resampled.
        target_length: number of 10 ms frames to return (zero-padded at the end or cropped).
        mean: normalisation mean (e.g. ``NORM_STATS["speechcommands"][0]``); ``None`` with ``std=None``
            returns the raw log-mel energies (for computing statistics).
        std: normalisation standard deviation; the features are ``(fbank - mean) / (2 * std)``.
        num_mel_bins: mel bins (128 in every SSAST / SSAMBA recipe).

    Returns:
        (target_length, num_mel_bins) float32.
    """
    from torchaudio.compliance import kaldi

    if target_length <= 0:
        raise ValueError(f"argument 'target_length' must be positive; got {target_length}")
    if (mean is None) != (std is None):
        raise ValueError(f"arguments 'mean' and 'std' must both be given or both be None; got {mean}, {std}")
    if std is not None and std <= 0:
        raise ValueError(f"argument 'std' must be positive; got {std}")
    wav = to_mono_16k(waveform, sample_rate)
    window = int(SAMPLE_RATE * FRAME_LENGTH_MS / 1000)
    if wav.numel() < window:
        raise ValueError(f"argument 'waveform' is too short: {wav.numel()} samples at 16 kHz, fewer than one "
                         f"{FRAME_LENGTH_MS:g} ms window ({window})")
    wav = wav - wav.mean()
    fbank = kaldi.fbank(wav.unsqueeze(0), htk_compat=True, sample_frequency=SAMPLE_RATE, use_energy=False,
                        window_type="hanning", num_mel_bins=num_mel_bins, dither=0.0,
                        frame_length=FRAME_LENGTH_MS, frame_shift=FRAME_SHIFT_MS)
    frames = fbank.shape[0]
    if frames < target_length:
        fbank = torch.nn.functional.pad(fbank, (0, 0, 0, target_length - frames))
    else:
        fbank = fbank[:target_length]
    if mean is not None:
        fbank = (fbank - mean) / (2 * std)
    return fbank

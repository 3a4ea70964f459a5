"""AudioDataModule: labels from patterns / CSV, split rules, resampling + down-mixing, bad files."""
from __future__ import annotations

import pytest
import torch

from ssm_apps.audio import AudioDataModule, fbank_features, load_audio
from ssm_apps.audio.data import pattern_regex, stratified_split
from tests.audio.synth import CLASSES, make_folder
from tests.helpers import shared_path

SC = (-6.845978, 5.5654526)


def test_fsdd_official_split() -> None:
    dm = AudioDataModule(str(shared_path("data", "audio", "fsdd")), pattern="fsdd", split_field="take",
                         test_values=range(5), val_ratio=0.0, max_per_class=2, target_length=32)
    dm.setup("fit")
    assert dm.classes == [str(d) for d in range(10)]
    takes = {s: {int(p.split("_")[2].split(".")[0]) for p in dm.files[s]} for s in ("train", "test")}
    assert takes["test"] <= set(range(5)) and min(takes["train"]) >= 5
    assert len(dm.files["train"]) == len(dm.files["test"]) == 20 and not dm.files["val"]
    ds = dm.datasets["test"]
    for i, path in enumerate(dm.files["test"]):
        assert dm.classes[int(ds.labels[i])] == path.split("_")[0]
    wav, sr = load_audio(dm.data_dir / dm.files["test"][3])
    assert torch.allclose(ds.features[3], fbank_features(wav, sr, 32, *SC), atol=1e-6)


def test_csv_labels_split_column_and_mixed_formats(tmp_path) -> None:
    root = make_folder(tmp_path / "tones")
    dm = AudioDataModule(str(root), labels_csv=str(root / "labels.csv"), split_column="split", target_length=40,
                         norm="esc50", batch_size=4)
    dm.setup("fit")
    assert dm.classes == sorted(CLASSES)
    assert {len(dm.files[s]) for s in ("test", "val")} == {3} and len(dm.files["train"]) == 6
    # 44.1 kHz stereo and 8 kHz mono clips: features of the resampled, down-mixed waveform
    name = dm.files["train"][0]
    wav, sr = load_audio(root / name)
    assert torch.allclose(dm.datasets["train"].features[0], fbank_features(wav, sr, 40, -6.6268077, 5.358466), atol=1e-6)
    batch = next(iter(dm.val_dataloader()))
    assert batch["fbank"].shape == (3, 40, 128) and batch["label"].dtype == torch.int64


def test_pattern_labels_with_ratio_split(tmp_path) -> None:
    root = make_folder(tmp_path / "tones", per_class=6, with_csv=False)
    dm = AudioDataModule(str(root), pattern="{label}_{speaker}_{take}", label_field="label", test_ratio=0.34,
                         val_ratio=0.0, seed=1, target_length=20)
    dm.setup("fit")
    assert sorted(dm.class_counts("test").values()) == [2, 2, 2]  # stratified: round(6 * 0.34) per class
    assert not set(dm.files["test"]) & set(dm.files["train"])


def test_stratified_split_keeps_one_of_small_classes() -> None:
    records = [{"label": "a"}] * 10 + [{"label": "b"}] * 2 + [{"label": "c"}]
    held, rest = stratified_split(records, 0.3, seed=0)
    assert [r["label"] for r in held].count("b") == 1 and len(held) + len(rest) == 13
    assert [r["label"] for r in held].count("a") == 3 and "c" not in [r["label"] for r in held]


def test_pattern_regex() -> None:
    m = pattern_regex("{digit}_{speaker}_{take}").match("7_jackson_12")
    assert m.groupdict() == {"digit": "7", "speaker": "jackson", "take": "12"}


def test_bad_files_error_or_skip(tmp_path) -> None:
    root = make_folder(tmp_path / "tones")
    (root / "mid_s0_9.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with open(root / "labels.csv", "a") as fh:
        fh.write("mid_s0_9.wav,mid,train\n")
    kwargs = dict(labels_csv=str(root / "labels.csv"), split_column="split", target_length=20)
    with pytest.raises(ValueError, match="mid_s0_9.wav"):
        AudioDataModule(str(root), **kwargs).setup("fit")
    dm = AudioDataModule(str(root), skip_bad_files=True, **kwargs)
    dm.setup("fit")
    assert len(dm.skipped_files) == 1 and "mid_s0_9.wav" in dm.skipped_files[0]
    assert "mid_s0_9.wav" not in dm.files["train"] and len(dm.files["train"]) == 6


def test_unmatched_names_and_unknown_columns(tmp_path) -> None:
    root = make_folder(tmp_path / "tones")
    (root / "stray.wav").write_bytes((root / "low_s0_0.wav").read_bytes())
    with pytest.raises(ValueError, match="stray.wav.*does not match"):
        AudioDataModule(str(root), pattern="{label}_{speaker}_{take}", label_field="label").setup("fit")
    with pytest.raises(ValueError, match="no column 'fold'"):
        AudioDataModule(str(root), labels_csv=str(root / "labels.csv"), split_column="fold").setup("fit")
    with pytest.raises(ValueError, match="exactly one of"):
        AudioDataModule(str(root))

"""AudioDataModule: a folder of audio files -> cached SSAST/SSAMBA features, labels and splits.

Labels come from the file names (a pattern such as FSDD's ``{digit}_{speaker}_{take}``) or from a CSV
(``file`` and label columns). Splits: by a pattern field (e.g. FSDD's official ``take`` 0-4 = test),
by a CSV column holding ``train`` / ``val`` / ``test``, or by ratios (stratified by class). Any sample
rate and channel count is accepted: channels are averaged, audio is resampled to 16 kHz, then
:func:`~ssm_apps.audio.fbank_features` is computed once per file and cached (in memory, and on disk
with ``cache_dir``). A file that cannot be read, or is empty or corrupt, stops ``setup`` with an error
naming it; with ``skip_bad_files=True`` it is left out and the skipped files are printed and kept in
``skipped_files``. Clips shorter than one 25 ms window are zero-padded to one window and reported.

Batches are dicts: ``fbank`` (B, target_length, 128), ``label`` (B,) int64 (or (B, C) float for
multi-label), ``index`` (B,) into ``predict_names`` / the split's ``files``.
"""
from __future__ import annotations

import csv
import hashlib
import random
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from .features import FRAME_LENGTH_MS, SAMPLE_RATE, fbank_features, load_audio, norm_stats, to_mono_16k

PATTERN_PRESETS = {"fsdd": ("{digit}_{speaker}_{take}", "digit")}
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".aiff", ".aif")
SPLITS = ("train", "val", "test")


def pattern_regex(pattern: str) -> re.Pattern:
    """``"{digit}_{speaker}_{take}"`` -> a regex with one named group per field; each field matches the
    shortest non-empty text up to the next literal part, the whole stem must match."""
    parts = re.split(r"\{(\w+)\}", pattern)
    regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>.+?)" for i, p in enumerate(parts))
    return re.compile(regex + "$")


class _FeatureReader(Dataset):
    """Item i -> (features or None, error message or None, padded to one window) of ``paths[i]``."""

    def __init__(self, root: Path, paths: list[str], target_length: int, mean: float | None, std: float | None) -> None:
        self.root, self.paths, self.target_length, self.mean, self.std = root, paths, target_length, mean, std

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor | None, str | None, bool]:
        try:
            wav, sr = load_audio(self.root / self.paths[i])
        except ValueError as err:
            return None, str(err), False
        wav = to_mono_16k(wav, sr)
        window = int(SAMPLE_RATE * FRAME_LENGTH_MS / 1000)
        padded = wav.numel() < window
        if padded:
            wav = torch.nn.functional.pad(wav, (0, window - wav.numel()))
        return fbank_features(wav, SAMPLE_RATE, self.target_length, self.mean, self.std), None, padded


class FeatureDataset(Dataset):
    """Cached features with labels: item ``i`` -> dict(fbank, label, index)."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> None:
        self.features, self.labels, self.index = features, labels, index

    def __len__(self) -> int:
        return self.features.shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"fbank": self.features[i], "label": self.labels[i], "index": self.index[i]}


class AudioDataModule(L.LightningDataModule):
    """Audio classification data from a folder (see the module docstring).

    Args:
        data_dir: folder of audio files (searched recursively for ``extensions``).
        pattern: file-name pattern without extension, fields in braces (``"{digit}_{speaker}_{take}"``),
            or a preset name (``"fsdd"``); files that do not match are an error.
        label_field: the pattern field that is the label (the preset's when None).
        labels_csv: CSV with a ``file_column`` (path relative to ``data_dir``) and a ``label_column``;
            only the files it lists are used. Give ``pattern`` or ``labels_csv``, not both.
        file_column: CSV column of the file names.
        label_column: CSV column of the labels; several labels separated by ``label_separator`` make the
            task multi-label.
        label_separator: separator of multiple labels in one CSV cell (None = single label).
        split_field: pattern field (or CSV column) that decides the split with ``test_values`` /
            ``val_values``; e.g. ``"take"`` with ``test_values=[0, 1, 2, 3, 4]`` for FSDD.
        test_values: values of ``split_field`` that go to test (compared as strings).
        val_values: values of ``split_field`` that go to validation (else ``val_ratio`` of the rest).
        split_column: CSV column holding ``train`` / ``val`` / ``test`` per file.
        val_ratio: share of the non-test files held out for validation (stratified) when no rule gives them.
        test_ratio: share held out for test (stratified) when neither ``split_field`` nor ``split_column``.
        seed: seed of the ratio splits.
        classes: class names in index order (sorted labels when None; numbers sort numerically).
        target_length: frames per clip (10 ms each).
        norm: normalisation preset (``"speechcommands"``, ``"esc50"``, ``"audioset"``); ignored when
            ``mean`` and ``std`` are given (``ssm-apps audio stats`` computes them).
        mean: normalisation mean.
        std: normalisation std.
        batch_size: batch size of every loader.
        num_workers: DataLoader workers (features are cached: 0 is usually fastest).
        feature_workers: worker processes computing the features once in ``setup``.
        cache_dir: folder for an on-disk feature cache (keyed by files and settings); None = memory only.
        skip_bad_files: leave out unreadable / empty / corrupt files (reported) instead of failing.
        max_per_class: keep at most this many files per class and split (a seeded draw), for quick runs.
        predict_split: split used by ``predict`` (``"test"``, ``"val"``, ``"train"``).
        extensions: file extensions to read.
    """

    def __init__(
        self,
        data_dir: str,
        pattern: str | None = None,
        label_field: str | None = None,
        labels_csv: str | None = None,
        file_column: str = "file",
        label_column: str = "label",
        label_separator: str | None = None,
        split_field: str | None = None,
        test_values: Sequence[str | int] = (),
        val_values: Sequence[str | int] = (),
        split_column: str | None = None,
        val_ratio: float = 0.1,
        test_ratio: float = 0.2,
        seed: int = 0,
        classes: Sequence[str] | None = None,
        target_length: int = 128,
        norm: str | None = "speechcommands",
        mean: float | None = None,
        std: float | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        feature_workers: int = 0,
        cache_dir: str | None = None,
        skip_bad_files: bool = False,
        max_per_class: int | None = None,
        predict_split: str = "test",
        extensions: Sequence[str] = AUDIO_EXTENSIONS,
    ) -> None:
        super().__init__()
        if (pattern is None) == (labels_csv is None):
            raise ValueError("AudioDataModule: give exactly one of 'pattern' and 'labels_csv'")
        if split_field is not None and split_column is not None:
            raise ValueError("AudioDataModule: give at most one of 'split_field' and 'split_column'")
        for name, value in (("val_ratio", val_ratio), ("test_ratio", test_ratio)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"AudioDataModule: argument {name!r} must be in [0, 1); got {value}")
        if predict_split not in SPLITS:
            raise ValueError(f"AudioDataModule: argument 'predict_split' must be one of {SPLITS}; got {predict_split!r}")
        if (mean is None) != (std is None):
            raise ValueError("AudioDataModule: give both 'mean' and 'std' or neither")
        if mean is None and norm is None:
            raise ValueError("AudioDataModule: give 'norm' (a preset) or 'mean' and 'std'")
        self.save_hyperparameters()
        self.data_dir = Path(data_dir)
        if pattern in PATTERN_PRESETS:
            pattern, preset_field = PATTERN_PRESETS[pattern]
            label_field = label_field or preset_field
        if pattern is not None and label_field is None:
            raise ValueError("AudioDataModule: argument 'label_field' names the pattern field holding the label")
        self.pattern, self.label_field = pattern, label_field
        self.mean, self.std = (mean, std) if mean is not None else norm_stats(norm)
        self.skipped_files: list[str] = []
        self.padded_files: list[str] = []
        self.classes: list[str] = list(classes) if classes is not None else []
        self.multilabel = label_separator is not None
        self.files: dict[str, list[str]] = {}
        self.datasets: dict[str, FeatureDataset] = {}

    # ----------------------------------------------------------------- listing
    def _records(self) -> list[dict[str, str]]:
        """One dict per file: ``path`` (relative), ``label``, and the pattern fields or CSV columns."""
        if not self.data_dir.is_dir():
            raise FileNotFoundError(f"AudioDataModule: data_dir {str(self.data_dir)!r} is not a folder")
        hp = self.hparams
        if self.pattern is not None:
            regex = pattern_regex(self.pattern)
            if self.label_field not in regex.groupindex:
                raise ValueError(f"AudioDataModule: label_field {self.label_field!r} is not a field of {self.pattern!r}")
            paths = sorted(p for p in self.data_dir.rglob("*") if p.suffix.lower() in tuple(hp.extensions))
            if not paths:
                raise FileNotFoundError(f"AudioDataModule: no {list(hp.extensions)} files under {str(self.data_dir)!r}")
            records = []
            for p in paths:
                m = regex.match(p.stem)
                if m is None:
                    raise ValueError(f"AudioDataModule: file {str(p)!r} does not match the pattern {self.pattern!r}")
                fields = m.groupdict()
                records.append({**fields, "path": str(p.relative_to(self.data_dir)), "label": fields[self.label_field]})
            return records
        csv_path = Path(hp.labels_csv)
        with open(csv_path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        if not rows:
            raise ValueError(f"AudioDataModule: labels_csv {str(csv_path)!r} has no rows")
        for col in (hp.file_column, hp.label_column, hp.split_column, hp.split_field):
            if col is not None and col not in rows[0]:
                raise ValueError(f"AudioDataModule: labels_csv {str(csv_path)!r} has no column {col!r}; "
                                 f"columns: {list(rows[0])}")
        return [{**r, "path": r[hp.file_column], "label": r[hp.label_column]} for r in rows]

    def _split(self, records: list[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
        hp = self.hparams
        out: dict[str, list[dict[str, str]]] = {s: [] for s in SPLITS}
        rest: list[dict[str, str]] = []
        if hp.split_column is not None:
            for r in records:
                value = r[hp.split_column].strip().lower()
                if value not in SPLITS:
                    raise ValueError(f"AudioDataModule: split column {hp.split_column!r} of {r['path']!r} is "
                                     f"{value!r}; expected one of {SPLITS}")
                out[value].append(r)
            return out
        if hp.split_field is not None:
            if hp.split_field not in records[0]:
                raise ValueError(f"AudioDataModule: split_field {hp.split_field!r} is not a pattern field / CSV column")
            test_v, val_v = {str(v) for v in hp.test_values}, {str(v) for v in hp.val_values}
            if not test_v:
                raise ValueError("AudioDataModule: split_field needs 'test_values'")
            for r in records:
                value = r[hp.split_field]
                (out["test"] if value in test_v else out["val"] if value in val_v else rest).append(r)
        else:
            out["test"], rest = stratified_split(records, hp.test_ratio, hp.seed)
        if not out["val"] and hp.val_ratio > 0:
            out["val"], rest = stratified_split(rest, hp.val_ratio, hp.seed + 1)
        out["train"] = rest
        return out

    # ----------------------------------------------------------------- features
    def _features(self, paths: list[str]) -> tuple[torch.Tensor, list[bool]]:
        hp = self.hparams
        key = hashlib.sha1(repr((sorted(paths), hp.target_length, self.mean, self.std, str(self.data_dir.resolve())))
                           .encode()).hexdigest()[:16]
        cache = Path(hp.cache_dir) / f"audio_features_{key}.pt" if hp.cache_dir else None
        if cache is not None and cache.is_file():
            saved = torch.load(cache, weights_only=True)
            if saved["paths"] == paths:
                self.padded_files = list(saved["padded"])
                return saved["features"], saved["ok"].tolist()
        from tqdm.auto import tqdm

        feats = torch.zeros(len(paths), hp.target_length, 128)
        ok = [True] * len(paths)
        reader = _FeatureReader(self.data_dir, paths, hp.target_length, self.mean, self.std)
        loader = DataLoader(reader, batch_size=None, num_workers=hp.feature_workers)
        for i, (feat, error, padded) in enumerate(tqdm(loader, desc="audio features", unit="file", disable=None)):
            if error is not None:
                if not hp.skip_bad_files:
                    raise ValueError(error)
                ok[i] = False
                self.skipped_files.append(error)
                continue
            feats[i] = feat
            if padded:
                self.padded_files.append(paths[i])
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"paths": paths, "features": feats, "ok": torch.tensor(ok), "padded": self.padded_files}, cache)
        return feats, ok

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        records = self._records()
        labels_of = [self._labels(r["label"]) for r in records]
        if not self.classes:
            self.classes = sort_labels({lab for labs in labels_of for lab in labs})
        known = set(self.classes)
        for r, labs in zip(records, labels_of):
            unknown = [lab for lab in labs if lab not in known]
            if unknown:
                raise ValueError(f"AudioDataModule: file {r['path']!r} has labels {unknown} not in classes {self.classes}")
        splits = self._split(records)
        if self.hparams.max_per_class is not None:
            splits = {s: limit_per_class(rs, self.hparams.max_per_class, self.hparams.seed) for s, rs in splits.items()}
        every = [r["path"] for s in SPLITS for r in splits[s]]
        feats, ok = self._features(every)
        bad = {p for p, good in zip(every, ok) if not good}
        if self.skipped_files:
            print(f"AudioDataModule: skipped {len(self.skipped_files)} bad file(s): " + "; ".join(self.skipped_files))
        if self.padded_files:
            print(f"AudioDataModule: {len(self.padded_files)} clip(s) shorter than one {FRAME_LENGTH_MS:g} ms window "
                  f"were zero-padded to one window: {self.padded_files}")
        row = {p: i for i, p in enumerate(every)}
        for split in SPLITS:
            kept = [r for r in splits[split] if r["path"] not in bad]
            self.files[split] = [r["path"] for r in kept]
            idx = torch.tensor([row[r["path"]] for r in kept], dtype=torch.long)
            labels = torch.stack([self._target(r["label"]) for r in kept]) if kept else torch.zeros(0, dtype=torch.long)
            self.datasets[split] = FeatureDataset(feats[idx] if kept else feats[:0], labels,
                                                  torch.arange(len(kept), dtype=torch.long))
        if not self.files["train"] and stage in (None, "fit"):
            raise ValueError("AudioDataModule: the train split is empty")

    def _labels(self, cell: str) -> list[str]:
        sep = self.hparams.label_separator
        return [x.strip() for x in cell.split(sep)] if sep else [cell.strip()]

    def _target(self, cell: str) -> torch.Tensor:
        labs = self._labels(cell)
        if not self.multilabel:
            return torch.tensor(self.classes.index(labs[0]), dtype=torch.long)
        target = torch.zeros(len(self.classes))
        target[[self.classes.index(lab) for lab in labs]] = 1.0
        return target

    # ----------------------------------------------------------------- loaders
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def predict_names(self) -> list[str]:
        return self.files.get(self.hparams.predict_split, [])

    def class_counts(self, split: str) -> Counter:
        """Counter of class names in a split (single-label data)."""
        return Counter(self.classes[int(i)] for i in self.datasets[split].labels)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        ds = self.datasets[split]
        return DataLoader(ds, batch_size=self.hparams.batch_size, shuffle=shuffle, num_workers=self.hparams.num_workers,
                          drop_last=shuffle and len(ds) > self.hparams.batch_size)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", False) if len(self.datasets["val"]) else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.hparams.predict_split, False)


def sort_labels(labels: set[str]) -> list[str]:
    """Sorted class names; all-numeric names sort by value ("2" before "10")."""
    if all(re.fullmatch(r"-?\d+", lab) for lab in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def stratified_split(records: list[dict[str, str]], ratio: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(held_out, rest): per class, ``round(n * ratio)`` files (at least 1 of a class with >= 2 files when
    ratio > 0), drawn with ``random.Random(seed)``; both lists keep the input order."""
    if ratio <= 0:
        return [], list(records)
    by_class: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        by_class.setdefault(r["label"], []).append(i)
    rng = random.Random(seed)
    held: set[int] = set()
    for label in sorted(by_class):
        idx = by_class[label]
        n = round(len(idx) * ratio)
        if len(idx) >= 2:
            n = min(max(n, 1), len(idx) - 1)
        held.update(rng.sample(idx, n))
    return ([r for i, r in enumerate(records) if i in held], [r for i, r in enumerate(records) if i not in held])


def limit_per_class(records: list[dict[str, str]], limit: int, seed: int) -> list[dict[str, str]]:
    """At most ``limit`` records of each class, drawn with ``random.Random(seed)`` (input order kept)."""
    by_class: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        by_class.setdefault(r["label"], []).append(i)
    rng = random.Random(seed)
    kept = {i for label in sorted(by_class) for i in rng.sample(by_class[label], min(limit, len(by_class[label])))}
    return [r for i, r in enumerate(records) if i in kept]

"""End to end on CPU: train the tiny CMamba a few steps with Lightning, then compress and decompress
a real Kodak crop through the CLI (bit-exact, bpp of the file vs the model's estimate, header checks),
and evaluate a folder."""
from __future__ import annotations

import json
import warnings

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from ssm_apps.codecs import codec
from ssm_apps.codecs.cli import main
from ssm_apps.codecs.cmamba import deterministic_inference
from ssm_apps.codecs.data import ImageCompressionDataModule
from ssm_apps.codecs.metrics import bpp_from_likelihoods
from ssm_apps.codecs.pretrained import load_weights_file
from ssm_apps.codecs.task import ImageCompressionTask
from tests.helpers import shared_path

STEPS = 6


def _fit(tmp_path, seed: int, name: str):
    L.seed_everything(seed)
    task = ImageCompressionTask(model_config="tiny", lr=1e-3, milestones=[STEPS - 1])
    data = ImageCompressionDataModule(
        train_dirs=[str(shared_path("data", "images", "train"))], val_dir=str(shared_path("data", "images", "kodak")),
        crop_size=64, batch_size=2, val_crop=64, val_limit=1, skip_small=True,
    )
    trainer = L.Trainer(accelerator="cpu", max_steps=2 * STEPS, limit_val_batches=1, val_check_interval=STEPS,
                        logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path / name, enable_checkpointing=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(task, datamodule=data)
    path = tmp_path / f"{name}.ckpt"
    trainer.save_checkpoint(path)
    return task, trainer, path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("codec_fit")
    torch.set_num_threads(1)
    task, trainer, path = _fit(tmp_path, 0, "a")
    _, _, other = _fit(tmp_path, 1, "b")
    return task, trainer, path, other


def test_task_trains_and_reloads(trained):
    task, trainer, path, _ = trained
    assert trainer.global_step == 2 * STEPS  # main + aux optimiser steps
    metrics = trainer.callback_metrics
    for key in ("train/loss", "train/bpp", "train/psnr", "train/aux_loss", "val/bpp", "val/psnr", "val/bpp_q1"):
        assert key in metrics and torch.isfinite(metrics[key]), key
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(1e-4)  # milestone reached
    reloaded = ImageCompressionTask.load_from_checkpoint(path)
    for (k, a), b in zip(task.state_dict().items(), reloaded.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)


def test_cli_round_trip_on_kodak_crop(trained, tmp_path, capsys):
    _, _, ckpt, other = trained
    kodak = np.asarray(Image.open(shared_path("data", "images", "kodak", "kodim23.png")).convert("RGB"))
    crop = kodak[100:356, 200:456]  # 256 x 256
    src = tmp_path / "crop.png"
    Image.fromarray(crop).save(src)
    out, png = tmp_path / "crop.ssmc", tmp_path / "crop_dec.png"
    assert main(["compress", str(src), str(out), "--checkpoint", str(ckpt), "--quality", "2"]) == 0
    assert main(["decompress", str(out), str(png), "--checkpoint", str(ckpt)]) == 0
    decoded = np.asarray(Image.open(png))

    model = load_weights_file(ckpt)
    reference = codec.encode(model, crop, 2)
    assert out.read_bytes() == reference.data
    np.testing.assert_array_equal(decoded, reference.reconstruction)  # bit-exact vs the encoder's reconstruction
    with deterministic_inference(model):
        x = torch.tensor(crop).permute(2, 0, 1)[None].float() / 255
        estimate = float(bpp_from_likelihoods(model(x, 2)["likelihoods"], 256 * 256))
    file_bpp = 8 * out.stat().st_size / (256 * 256)
    assert abs(file_bpp - estimate) / estimate < 0.10, (file_bpp, estimate)

    data = out.read_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    cases = {"truncated": data[:-7], "flipped": bytes(flipped)}
    for name, bad in cases.items():
        (tmp_path / f"{name}.ssmc").write_bytes(bad)
    capsys.readouterr()
    for name in cases:
        target = tmp_path / f"{name}.png"
        assert main(["decompress", str(tmp_path / f"{name}.ssmc"), str(target), "--checkpoint", str(ckpt)]) != 0
        assert not target.exists()
        assert "error:" in capsys.readouterr().err
    target = tmp_path / "other.png"
    assert main(["decompress", str(out), str(target), "--checkpoint", str(other)]) != 0
    assert not target.exists()
    assert "weights" in capsys.readouterr().err


def test_cli_eval_writes_csv_and_json(trained, tmp_path):
    _, _, ckpt, _ = trained
    folder = tmp_path / "images"
    folder.mkdir()
    kodak = np.asarray(Image.open(shared_path("data", "images", "kodak", "kodim05.png")).convert("RGB"))
    Image.fromarray(kodak[:96, :130]).save(folder / "a.png")
    Image.fromarray(kodak[200:300, 300:400, 0]).save(folder / "b.png")  # grayscale
    out = tmp_path / "eval"
    assert main(["eval", "--data", str(folder), "--checkpoint", str(ckpt), "--out", str(out), "--quality", "1", "2"]) == 0
    summary = json.loads((out / "results.json").read_text())
    assert len(summary["per_image"]) == 4 and [a["quality"] for a in summary["averages"]] == [1, 2]
    assert all(r["bit_exact"] for r in summary["per_image"])
    row = summary["per_image"][0]
    assert row["bpp"] == pytest.approx(8 * row["bytes"] / (96 * 130))
    assert (out / "results.csv").read_text().startswith("image,quality,width,height,bytes,bpp,psnr")


def test_cli_errors(tmp_path, capsys):
    missing = tmp_path / "none.png"
    assert main(["compress", str(missing), str(tmp_path / "x.ssmc"), "--checkpoint", str(tmp_path / "w.pt")]) != 0
    assert not (tmp_path / "x.ssmc").exists()
    junk = tmp_path / "junk.ssmc"
    junk.write_bytes(b"hello world, not a codec file")
    assert main(["decompress", str(junk), str(tmp_path / "y.png")]) != 0
    assert "not a .ssmc file" in capsys.readouterr().err

"""SegmentationDataModule / SegmentationTask / writer: data errors, the pipeline, a shortened real-data fit."""
from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from ssm_apps.vision import (
    SegmentationDataModule,
    SegmentationPredictionWriter,
    SegmentationTask,
)
from ssm_apps.vision.segmentation_task import iou_from_confusion, poly_warmup_factor
from tests.helpers import REPO, shared_path

TINY = {"embed_dims": (16, 32, 48, 64), "depths": (1, 1, 1, 1), "num_heads": (1, 2, 3, 4),
        "kernel_sizes": (3, 3, 3, 3), "img_size": 96}


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_data_errors_name_the_file(tmp_path):
    img = np.zeros((40, 48, 3), np.uint8)
    _write(tmp_path / "images/a.png", img)
    _write(tmp_path / "masks/a.png", np.zeros((40, 40), np.uint8))  # size mismatch
    dm = SegmentationDataModule(str(tmp_path), 3, crop_size=(32, 32))
    with pytest.raises(ValueError, match=r"a\.png is 48x40 but its mask .*a\.png is 40x40"):
        dm.dataset("train")[0]
    _write(tmp_path / "masks/a.png", np.full((40, 48), 7, np.uint8))  # label out of range
    with pytest.raises(ValueError, match=r"label values \[7\] are outside \[0, 3\)"):
        SegmentationDataModule(str(tmp_path), 3).dataset("val")[0]
    _write(tmp_path / "images/b.png", img)  # no mask for b
    with pytest.raises(FileNotFoundError, match=r"missing mask for image .*b\.png"):
        SegmentationDataModule(str(tmp_path), 3).pairs("train")
    (tmp_path / "images/b.png").write_bytes(b"not an image")
    _write(tmp_path / "masks/b.png", np.zeros((40, 48), np.uint8))
    with pytest.raises(ValueError, match=r"unreadable image .*b\.png"):
        SegmentationDataModule(str(tmp_path), 8).dataset("val")[1]


def test_ade20k_layout_reduce_zero_label_and_train_pipeline(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("training", "validation"):
        _write(tmp_path / f"images/{split}/x1.jpg", rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))
        mask = np.zeros((60, 80), np.uint8)
        mask[:, 40:] = 2
        mask[:30, :] = 1
        _write(tmp_path / f"annotations/{split}/x1.png", mask)
    dm = SegmentationDataModule(str(tmp_path), 2, layout="ade20k", reduce_zero_label=True, crop_size=(48, 48),
                                scale=(80, 60), batch_size=1)
    val = dm.dataset("val")[0]
    assert val["image"].shape == (3, 60, 80)
    assert set(torch.unique(val["mask"]).tolist()) == {0, 1, 255}  # 0 -> ignore, 1 -> 0, 2 -> 1
    torch.manual_seed(0)
    sample = dm.dataset("train")[0]
    assert sample["image"].shape == (3, 48, 48) and sample["mask"].shape == (48, 48)
    assert set(torch.unique(sample["mask"]).tolist()) <= {0, 1, 255}


def test_schedule_and_metrics():
    assert poly_warmup_factor(0, 100, 10, 1e-6) == pytest.approx(1e-6)
    assert poly_warmup_factor(10, 100, 10) == pytest.approx(0.9)
    assert poly_warmup_factor(100, 100, 10) == 0.0
    iou, miou, acc = iou_from_confusion(torch.tensor([[3, 1, 0], [1, 5, 0], [0, 0, 0]]))
    assert iou[0] == pytest.approx(3 / 5) and iou[1] == pytest.approx(5 / 7) and torch.isnan(iou[2])
    assert miou == pytest.approx((3 / 5 + 5 / 7) / 2) and acc == pytest.approx(0.8)


def test_param_groups_head_lr_and_no_decay():
    task = SegmentationTask("segman_encoder_tiny", 2, "segman", {"channels": 16, "feat_proj_dim": 16},
                            backbone_kwargs=TINY, lr=1e-3, head_lr_mult=10)
    groups = task.build_optimizer(task.optim_param_groups(), 1e-3).param_groups  # as configure_optimizers
    names = {id(p): n for n, p in task.model.named_parameters()}
    for g in groups:
        for p in g["params"]:
            name = names[id(p)]
            assert g["lr"] == pytest.approx(1e-2 if not name.startswith("backbone.") else 1e-3), name
            if "rpb" in name or "norm" in name or name.endswith("bias"):
                assert g["weight_decay"] == 0.0, name
    assert sum(len(g["params"]) for g in groups) == len(list(task.model.parameters()))


def test_shortened_membrane_fit_test_predict_and_reload(tmp_path):
    """A tiny SegMAN on the real membrane slices (first 24 train, last 6 test) through the YAML config's
    data settings, at 1/4 resolution: 8 steps (head lr x10) must lower the training loss and the test pixel
    accuracy must reach the cell-interior fraction (~0.79); predictions are written as index PNGs."""
    cfg = yaml.safe_load((REPO / "configs/vision/segman_tiny_membrane.yaml").read_text())
    data_args = dict(cfg["data"]["init_args"], root=str(shared_path("data", "medical2d", "membrane")),
                     crop_size=[96, 96], scale=[128, 128], eval_scale=[128, 128], ratio_range=[0.75, 1.25],
                     batch_size=4, num_workers=0, train_repeat=1)
    dm = SegmentationDataModule(**data_args)
    assert [p[0].name for p in dm.pairs("test")] == [f"{i}.png" for i in range(24, 30)]
    L.seed_everything(0)
    task = SegmentationTask("segman_encoder_tiny", 2, "segman", {"channels": 16, "feat_proj_dim": 16},
                            backbone_kwargs=TINY, lr=2e-3, head_lr_mult=10.0, warmup_steps=1,
                            class_names=["membrane", "cell"])
    losses = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    trainer = L.Trainer(max_steps=8, accelerator="cpu", logger=False, enable_progress_bar=False,
                        limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=tmp_path,
                        callbacks=[Record()], enable_model_summary=False)
    trainer.fit(task, dm)
    # from ln(2) = 0.693 (uniform logits) to below 0.62: it has at least learnt the class prior
    assert losses[0] > 0.68 and np.mean(losses[-3:]) < 0.62, losses
    metrics = trainer.test(task, dm, verbose=False)[0]
    assert metrics["test_aAcc"] >= 0.75, metrics
    assert 0.0 <= metrics["test_mIoU"] <= 1.0
    ckpt = tmp_path / "task.ckpt"
    trainer.save_checkpoint(ckpt)
    reloaded = SegmentationTask.load_from_checkpoint(ckpt).eval()
    x = dm.dataset("test")[0]["image"][None]
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), task.eval()(x))
    writer = SegmentationPredictionWriter(str(tmp_path / "pred"))
    dm.eval_batch_size = 2
    L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[writer],
              limit_predict_batches=1, enable_model_summary=False).predict(task, dm)
    index = SegmentationPredictionWriter.read_index(tmp_path / "pred/24.png")
    assert index.shape == (512, 512) and set(torch.unique(index).tolist()) <= {0, 1}
    assert (tmp_path / "pred/25_overlay.png").exists()

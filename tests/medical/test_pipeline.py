"""MedicalDataModule errors, the schedules, a short real-CT fit with a Dice bound, checkpoint reload and NIfTI
prediction read back with nibabel."""
from __future__ import annotations

import math

import lightning as L
import nibabel as nib
import numpy as np
import pytest
import torch

from ssm_apps.medical import (
    MedicalDataModule,
    MedicalPretrainTask,
    MedicalSegmentationTask,
    NiftiPredictionWriter,
)
from ssm_apps.medical.task import lr_wd_at
from tests.helpers import shared_path

STEPS, DICE_BOUND = 16, 0.5
TINY = {"channels": [4, 8, 8, 16, 24], "depths": [1, 1, 1, 1, 1], "exp_r": [2, 2, 2, 2, 2], "depth": 1}


def _nifti(path, data, affine=None):
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine), str(path))
    return str(path)


@pytest.fixture()
def pair(tmp_path):
    img = _nifti(tmp_path / "img.nii.gz", np.random.rand(20, 20, 20).astype(np.float32))
    lab = np.zeros((20, 20, 20), np.uint8)
    lab[5:10, 5:10, 5:10] = 2
    return tmp_path, img, _nifti(tmp_path / "lab.nii.gz", lab)


def _setup(**kw):
    dm = MedicalDataModule(pixdim=None, roi_size=(16, 16, 16), **kw)
    dm.setup("fit")
    return dm


def test_data_errors_name_the_file(pair):
    tmp, img, lab = pair
    with pytest.raises(FileNotFoundError, match="missing.nii.gz"):
        MedicalDataModule(train=[{"image": img, "label": str(tmp / "missing.nii.gz")}])
    bad = _nifti(tmp / "shape.nii.gz", np.zeros((20, 20, 19), np.uint8))
    with pytest.raises(ValueError, match="shape.nii.gz.*spatial shape"):
        _setup(train=[{"image": img, "label": bad}])
    moved = np.eye(4)
    moved[0, 3] = 5.0
    bad = _nifti(tmp / "affine.nii.gz", np.ones((20, 20, 20), np.uint8), moved)
    with pytest.raises(ValueError, match="affine.nii.gz.*affine"):
        _setup(train=[{"image": img, "label": bad}])
    bad = _nifti(tmp / "float.nii.gz", np.full((20, 20, 20), 0.5, np.float32))
    with pytest.raises(ValueError, match="float.nii.gz.*non-integer"):
        _setup(train=[{"image": img, "label": bad}])
    with pytest.raises(ValueError, match=r"lab.nii.gz.*\[0, 2\]"):
        _setup(train=[{"image": img, "label": lab}], num_classes=2)
    with pytest.raises(ValueError, match="lab.nii.gz.*no foreground"):
        _setup(train=[{"image": img, "label": lab}], labels=[7])
    dm = _setup(train=[{"image": img, "label": lab}], labels=[2], num_samples=3)
    crops = dm.datasets["train"][0]
    assert len(crops) == 3 and crops[0]["image"].shape == (1, 16, 16, 16)
    assert set(torch.unique(crops[0]["label"]).tolist()) <= {0, 1}


def test_intensity_augmentation(pair):
    """intensity_aug=1: every crop is rescaled and shifted (MONAI's RandScale/RandShiftIntensityd); 0: the crop's
    values are the volume's (whole-volume crops; flips and rotations keep the sorted values)."""
    _, img, lab = pair

    def crop(**kw):
        dm = MedicalDataModule(train=[{"image": img, "label": lab}], labels=[2], num_samples=1, pixdim=None,
                               crop_foreground=False, roi_size=(20, 20, 20), **kw)
        dm.setup("fit")
        return dm.datasets["train"][0][0]["image"].flatten().sort().values

    reference = crop()
    torch.testing.assert_close(crop(), reference)
    assert not torch.allclose(crop(intensity_aug=1.0), reference)
    with pytest.raises(ValueError, match=r"'intensity_aug' must be a probability in \[0, 1\]; got 1.5"):
        MedicalDataModule(train=[{"image": img, "label": lab}], intensity_aug=1.5)



def test_fov_augmentation(pair):
    """fov_aug=1: every crop keeps one contiguous run of at least fov_min_slices axial slices; image and label are
    0 on every other slice (image values are > 0 before: rand in [0, 1) scaled from (-175, 250) HU)."""
    _, img, lab = pair

    def crops(**kw):
        dm = MedicalDataModule(train=[{"image": img, "label": lab}], labels=[2], num_samples=1, pixdim=None,
                               crop_foreground=False, roi_size=(20, 20, 20), **kw)
        dm.setup("fit")
        dm.datasets["train"].transform.set_random_state(0)
        return [dm.datasets["train"][0][0] for _ in range(12)]

    for c in crops():
        assert bool((c["image"] > 0).all())
    thickness = set()
    for c in crops(fov_aug=1.0, fov_min_slices=4):
        kept = (c["image"][0] != 0).flatten(0, 1).any(0)
        idx = kept.nonzero().flatten()
        assert len(idx) >= 4 and torch.equal(idx, torch.arange(int(idx[0]), int(idx[-1]) + 1))
        assert bool((c["image"][0][:, :, kept] > 0).all()), "inside the slab every voxel is kept"
        assert not bool(c["label"][0][:, :, ~kept].any()), "outside the slab the label is background"
        thickness.add(len(idx))
    assert len(thickness) > 3  # random thickness
    with pytest.raises(ValueError, match=r"'fov_aug' must be a probability in \[0, 1\]; got -0.1"):
        MedicalDataModule(train=[{"image": img, "label": lab}], fov_aug=-0.1)
    with pytest.raises(ValueError, match=r"'fov_min_slices' must be in \[1, roi_size\[-1\] = 20\]; got 21"):
        MedicalDataModule(train=[{"image": img, "label": lab}], roi_size=(20, 20, 20), fov_aug=0.5, fov_min_slices=21)
    with pytest.raises(ValueError, match="'fov_aug' needs spatial_dims=3; got 2"):
        MedicalDataModule(train=[{"image": img, "label": lab}], spatial_dims=2, roi_size=(20, 20), fov_aug=0.5)


@pytest.mark.parametrize("mode", ["constant", "replicate"])
def test_sliding_window_padding_mode(mode):
    """A volume thinner than the window: infer() equals the network on the volume padded by hand (MONAI pads
    symmetrically, the extra slice after) and cropped back."""
    torch.manual_seed(0)
    task = MedicalSegmentationTask("hymamba_tiny", TINY, num_classes=3, roi_size=(16, 16, 16), padding_mode=mode).eval()
    x = torch.rand(1, 1, 16, 16, 5)
    with torch.no_grad():
        expected = task.model(torch.nn.functional.pad(x, (5, 6, 0, 0, 0, 0), mode=mode))[..., 5:10]
        torch.testing.assert_close(task.infer(x), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="'padding_mode' must be 'constant', 'reflect' or 'replicate'; got 'edge'"):
        MedicalSegmentationTask("hymamba_tiny", TINY, padding_mode="edge")

def test_decathlon_datalist(pair, tmp_path):
    _, img, _ = pair
    (tmp_path / "dataset.json").write_text(
        '{"training": [{"image": "img.nii.gz", "label": "lab.nii.gz"}], "validation": '
        '[{"image": "img.nii.gz", "label": "lab.nii.gz"}]}')
    dm = MedicalDataModule(datalist=str(tmp_path / "dataset.json"), pixdim=None, roi_size=(16, 16, 16))
    assert dm.items["train"][0]["image"] == img and len(dm.items["val"]) == 1


def test_official_schedules():
    total, warm = 100, 10
    lr0, wd0 = lr_wd_at(0, total, 1e-4, 1e-7, warm, 0.005, 0.04, 0.2)
    assert math.isclose(lr0, 0.005e-4) and math.isclose(wd0, 0.04)
    assert math.isclose(lr_wd_at(warm, total, 1e-4, 1e-7, warm, 0.005, 0.04, 0.2)[0], 1e-4)
    lr_end, wd_end = lr_wd_at(total - 1, total, 1e-4, 1e-7, warm, 0.005, 0.04, 0.2)
    assert math.isclose(lr_end, 1e-7) and math.isclose(wd_end, 0.2)
    task = MedicalPretrainTask({"img_size": 32, "decoder_width": 32, **TINY})
    assert math.isclose(task.hparams.min_lr, 1e-7)  # official: 0.001 * lr
    groups = task.configure_optimizers()["optimizer"].param_groups
    no_decay = {id(p) for p in groups[1]["params"]}
    assert id(task.model.A_interpolation) in no_decay and id(task.model.mamba_mask_token) in no_decay


def _liver_crop(pixdim: float = 8.0, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """A (1, 1, size^3) crop of the real CT around the liver (through the data module) and its liver mask."""
    ts = shared_path("data", "medical3d", "totalsegmentator")
    dm = MedicalDataModule(val=[{"image": str(ts / "example_ct.nii.gz"),
                                 "label": str(ts / "example_seg_fast_force_split.nii.gz")}],
                           labels=[5], pixdim=(pixdim,) * 3, roi_size=(size,) * 3, cache="none")
    dm.setup("validate")
    item = dm.datasets["val"][0]
    x, y = torch.as_tensor(item["image"]), torch.as_tensor(item["label"])
    centre = (y[0] > 0).nonzero().float().mean(0).long()
    sl = [slice(max(0, min(int(c) - size // 2, s - size)), max(0, min(int(c) - size // 2, s - size)) + size)
          for c, s in zip(centre, x.shape[1:])]
    return x[0][sl[0], sl[1], sl[2]][None, None], y[0][sl[0], sl[1], sl[2]][None, None]


def test_short_fit_on_real_ct_crop_learns_the_liver():
    x, y = _liver_crop()
    assert 0.03 < float((y > 0).float().mean()) < 0.3
    torch.manual_seed(0)
    task = MedicalSegmentationTask("hymamba_tiny", TINY, num_classes=2, class_names=["liver"], roi_size=(32, 32, 32),
                                   lambda_ce=0.1)
    opt = torch.optim.AdamW(task.model.parameters(), lr=1e-2)
    for _ in range(STEPS):
        loss = task.loss_fn(task.model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = task.eval().infer(x).argmax(1) == 1
    truth = y[:, 0] > 0
    dice = 2 * float((pred & truth).sum()) / float(pred.sum() + truth.sum())
    assert dice > DICE_BOUND, dice  # all-background scores 0, all-liver ~0.14 (2 x its volume fraction)


def test_fit_reload_and_predict_nifti(tmp_path):
    ts = shared_path("data", "medical3d", "totalsegmentator")
    ct, seg = str(ts / "example_ct.nii.gz"), str(ts / "example_seg_fast_force_split.nii.gz")
    torch.manual_seed(0)
    dm = MedicalDataModule(train=[{"image": ct, "label": seg}], predict=[{"image": ct}], labels=[5, 1],
                           pixdim=(12.0, 12.0, 12.0), roi_size=(16, 16, 16), num_samples=1)
    task = MedicalSegmentationTask("hymamba_tiny", TINY, num_classes=3, class_names=["liver", "spleen"], lr=1e-3,
                                   roi_size=(16, 16, 16), sw_batch_size=8, overlap=0.0)
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                        default_root_dir=str(tmp_path), enable_model_summary=False)
    trainer.fit(task, dm)
    ckpt = tmp_path / "task.ckpt"
    trainer.save_checkpoint(ckpt)
    reloaded = MedicalSegmentationTask.load_from_checkpoint(ckpt)  # rebuilt from the checkpoint alone
    x = torch.rand(1, 1, 16, 16, 16)
    assert torch.equal(reloaded.eval()(x), task.eval()(x))
    writer = NiftiPredictionWriter(str(tmp_path / "pred"))
    L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[writer],
              default_root_dir=str(tmp_path)).predict(reloaded, dm, return_predictions=False)
    src, out = nib.load(ct), nib.load(str(writer.written[0]))
    assert out.shape == src.shape and np.allclose(out.affine, src.affine)
    assert out.header.get_zooms() == src.header.get_zooms()
    assert out.header["qform_code"] == src.header["qform_code"] and out.header["sform_code"] == src.header["sform_code"]
    assert out.get_data_dtype() == np.uint8 and set(np.unique(np.asarray(out.dataobj))) <= {0, 1, 2}
    # pre-training checkpoint -> encoder weights for fine-tuning, reporting the loaded keys
    pre = MedicalPretrainTask({"img_size": 32, "decoder_width": 32, **TINY})
    torch.save({"state_dict": {f"model.{k}": v for k, v in pre.model.state_dict().items()}}, tmp_path / "pre.ckpt")
    ft = MedicalSegmentationTask("hymamba_tiny", TINY, num_classes=2, roi_size=(32, 32, 32),
                                 pretrained=str(tmp_path / "pre.ckpt"))
    assert len(ft.loaded_keys) == len(ft.model.encoder.state_dict()) - 1  # all but the recomputed sin-cos table
    assert torch.equal(ft.model.encoder.stem.weight, pre.model.encoder.stem.weight)

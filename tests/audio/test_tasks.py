"""AudioPretrainTask / AudioClassificationTask: steps, checkpoints, encoder loading, schedule, augmentation."""
from __future__ import annotations

import lightning as L
import pytest
import torch

from ssm_apps.audio import (
    SSAMBA,
    AudioClassificationTask,
    AudioDataModule,
    AudioPretrainTask,
    TopKPredictionWriter,
)
from ssm_apps.audio.ssamba import load_pretrained_encoder
from tests.audio.synth import make_folder
from tests.helpers import load_fixture

TINY = {"embed_dim": 16, "depth": 2, "input_tdim": 32, "scan_backend": "ref", "drop_path_rate": 0.0}


@pytest.fixture(scope="module")
def dm(tmp_path_factory) -> AudioDataModule:
    root = make_folder(tmp_path_factory.mktemp("tones") / "tones")
    data = AudioDataModule(str(root), labels_csv=str(root / "labels.csv"), split_column="split", target_length=32,
                           norm="esc50", batch_size=3)
    data.setup("fit")
    return data


def _trainer(tmp_path, **kw) -> L.Trainer:
    return L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                     default_root_dir=str(tmp_path), **kw)


def test_pretrain_step_checkpoint_and_encoder_transfer(tmp_path, dm) -> None:
    task = AudioPretrainTask(model_kwargs=dict(TINY, num_masked=4), warmup_steps=2, lr=1e-3)
    tr = _trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=1)
    tr.fit(task, datamodule=dm)
    assert {"train_loss_epoch", "val_mpc_acc", "val_loss"} <= set(tr.callback_metrics)
    path = tmp_path / "pre.ckpt"
    tr.save_checkpoint(path)
    again = AudioPretrainTask.load_from_checkpoint(path)
    assert torch.equal(again.model.pos_embed, task.model.pos_embed)
    # fine-tuning model: stride 10 and 48 frames -> another grid; the encoder comes across, heads dropped
    ft = AudioClassificationTask(num_classes=3, model_kwargs=dict(TINY, input_tdim=48, patch_stride=10))
    loaded = ft.load_encoder(str(path))
    assert loaded.filled == ["head.fc.bias", "head.fc.weight", "head.norm.bias", "head.norm.weight"]
    for key, value in task.model.state_dict().items():
        if key.startswith(("layers.", "norm_f")) or key in ("cls_token", "patch_embed.weight"):
            assert torch.equal(ft.model.state_dict()[key], value), key
    assert ft.model.pos_embed.shape == (1, 1 + 12 * 4, 16)


def test_official_pretraining_checkpoint_loads_for_finetuning(tmp_path) -> None:
    """An official .pth (module.* keys) -> the same encoder as SSAMBA.from_official's fine-tuning build."""
    pre, ft = load_fixture("ssamba_pretrain_public.pt"), load_fixture("ssamba_finetune_public.pt")
    path = tmp_path / "official.pth"
    torch.save(pre["state_dict"], path)
    task = AudioClassificationTask(num_classes=10, model_kwargs={"embed_dim": 32, "depth": 4, "input_tdim": 128,
                                                                     "patch_stride": 10})
    task.load_encoder(str(path))
    reference = SSAMBA.from_official(ft["kwargs"], pre["state_dict"]).state_dict()
    for key, value in task.model.state_dict().items():
        if not key.startswith("head."):
            assert torch.equal(value, reference[key]), key


def test_finetune_fit_test_predict_and_reload(tmp_path, dm) -> None:
    L.seed_everything(0)
    task = AudioClassificationTask(num_classes=3, model_kwargs=dict(TINY, patch_stride=16), warmup_steps=2,
                                   mixup=0.5, freqm=8, timem=8, noise=True, classes=dm.classes)
    writer = TopKPredictionWriter(str(tmp_path / "pred"), top_k=2, print_limit=0)
    tr = _trainer(tmp_path, max_epochs=2, callbacks=[writer])
    tr.fit(task, datamodule=dm)
    metrics = tr.test(task, datamodule=dm, verbose=False)[0]
    assert 0.0 <= metrics["test_acc"] <= 1.0
    tr.predict(task, datamodule=dm, return_predictions=False)
    lines = (tmp_path / "pred" / "predictions.csv").read_text().splitlines()
    assert lines[0] == "file,label,top1,top1_prob,top2,top2_prob" and len(lines) == 1 + len(dm.files["test"])
    first = lines[1].split(",")
    assert first[0] == dm.files["test"][0] and first[1] in dm.classes and first[2] in dm.classes
    assert float(first[3]) >= float(first[5])
    reloaded = AudioClassificationTask.load_from_checkpoint(tr.checkpoint_callback.best_model_path)
    x = dm.datasets["test"].features[:2]
    task.eval(), reloaded.eval()
    with torch.no_grad():
        assert torch.allclose(task(x), reloaded(x))


def test_official_optimiser_and_step_schedule(tmp_path, dm) -> None:
    """Adam (betas 0.95/0.999) with the shared 'multistep' schedule: lr x lr_decay at the milestone epochs
    lr_decay_start + k * lr_decay_step (0-based), as the official MultiStepLR stepped after each epoch."""
    task = AudioClassificationTask(num_classes=3, model_kwargs=TINY, lr=1e-3, warmup_steps=0, lr_decay_start=2,
                                   lr_decay_step=2, lr_decay=0.5)
    seen = []

    class Record(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    tr = _trainer(tmp_path, max_epochs=6, limit_train_batches=2, limit_val_batches=0, callbacks=[Record()])
    tr.fit(task, datamodule=dm)
    opt = tr.optimizers[0]
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["betas"] == (0.95, 0.999)
    assert seen == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4])
    pre_conf = AudioPretrainTask(model_kwargs=TINY, warmup_steps=0).configure_optimizers()
    assert isinstance(pre_conf["optimizer"], torch.optim.AdamW) and "lr_scheduler" not in pre_conf  # constant


def test_head_learning_rate_multiplier(tmp_path, dm) -> None:
    task = AudioClassificationTask(num_classes=3, model_kwargs=TINY, lr=1e-3, head_lr_mult=10.0, warmup_steps=0)
    tr = _trainer(tmp_path, max_epochs=1)
    task.trainer = tr
    tr.fit_loop.max_epochs = 1
    opt = task.configure_optimizers()["optimizer"]
    head = {id(p) for p in task.model.head.parameters()}
    for group in opt.param_groups:
        is_head = {id(p) for p in group["params"]} <= head
        assert group["lr"] == pytest.approx(1e-2 if is_head else 1e-3)
        if any(p.ndim <= 1 for p in group["params"]):
            assert group["weight_decay"] == 0.0


def test_specaugment_and_mixup() -> None:
    torch.manual_seed(0)
    task = AudioClassificationTask(num_classes=3, model_kwargs=TINY, mixup=1.0, freqm=20, timem=10, mask_value=7.0)
    x = torch.randn(4, 32, 128)
    target = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 0]), 3).float()
    out, mixed = task._augment(x, target)
    assert out.shape == x.shape and (out == 7.0).any()
    assert torch.allclose(mixed.sum(-1), torch.ones(4))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown pooling 'max'"):
        AudioClassificationTask(num_classes=3, model_kwargs=TINY, pooling="max")
    with pytest.raises(ValueError, match="multilabel"):
        AudioClassificationTask(num_classes=3, model_kwargs=TINY, multilabel=True)
    with pytest.raises(ValueError, match="unknown schedule 'poly'"):
        AudioPretrainTask(model_kwargs=TINY, schedule="poly")
    with pytest.raises(Exception, match="patch shape"):
        load_pretrained_encoder(SSAMBA(embed_dim=16, depth=2, input_tdim=32, patch_size=8, patch_stride=8),
                                SSAMBA(embed_dim=16, depth=2, input_tdim=32, patch_stride=16).state_dict())

"""``ImageCompressionTask``: trains and evaluates a CMamba codec with Lightning.

Manual optimisation with two optimisers, as CompressAI's training example: the main one (Adam,
``lr``) on every parameter but the entropy bottleneck's quantiles, the auxiliary one (Adam,
``aux_lr``) on the quantiles with ``model.aux_loss()``. Gradients of the main loss are clipped to
norm ``grad_clip``; the main learning rate drops by ``gamma`` at each of ``milestones`` (optimizer
steps). Variable-rate models draw one quality per training image from ``qualities``.

Logged: ``train/{loss,bpp,mse,psnr,aux_loss}``; ``val/`` and ``test/`` ``{loss,bpp,psnr[,ms_ssim]}``
averaged over ``eval_qualities`` and per quality (``val/psnr_q3`` ...), with the rate estimated from
the likelihoods (the real files are measured by ``ssm-apps codec eval``). MS-SSIM is logged when
the evaluation images are at least 161 pixels on each side.

The model is rebuilt from the saved hyper-parameters (``model_config`` + ``model_kwargs``), so
``ImageCompressionTask.load_from_checkpoint(path)`` needs nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch

from .cmamba import CONFIGS, MS_SSIM_LAMBDAS, MSE_LAMBDAS, CMamba, create_cmamba
from .losses import METRICS, RateDistortionLoss
from .metrics import MS_SSIM_MIN_SIDE, bpp_from_likelihoods, ms_ssim, psnr


def split_parameters(model: torch.nn.Module) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    """(main parameters, auxiliary parameters = the entropy bottlenecks' quantiles)."""
    main, aux = [], []
    for name, param in model.named_parameters():
        (aux if name.endswith(".quantiles") else main).append(param)
    return main, aux


def default_lambdas(metric: str, num_qualities: int) -> list[float]:
    """The last ``num_qualities`` presets of the metric (all six for a six-quality model)."""
    presets = MSE_LAMBDAS if metric == "mse" else MS_SSIM_LAMBDAS
    if num_qualities > len(presets):
        raise ValueError(f"give 'lambdas' explicitly: {num_qualities} qualities, {len(presets)} presets")
    return list(presets[-num_qualities:])


def sample_qualities(qualities: Sequence[int], batch: int, device: torch.device) -> torch.Tensor:
    """(B,) qualities drawn uniformly from ``qualities``."""
    choice = torch.randint(len(qualities), (batch,), device=device)
    return torch.as_tensor(list(qualities), device=device)[choice]


class ImageCompressionTask(L.LightningModule):
    """Rate-distortion training of a CMamba codec.

    Args:
        model_config: "base", "small" or "tiny" (``cmamba.CONFIGS``).
        model_kwargs: overrides of the configuration (e.g. ``{"num_qualities": 1}``).
        metric: "mse" (loss lambda * 255^2 * MSE + bpp) or "ms-ssim" (lambda * (1 - MS-SSIM) + bpp).
        lambdas: one lambda per quality (default: the metric's presets, the last ``num_qualities``).
        qualities: qualities trained (default: all).
        eval_qualities: qualities evaluated in validation/test (default: lowest and highest).
        lr: main learning rate.
        aux_lr: auxiliary (quantiles) learning rate.
        weight_decay: main optimiser weight decay.
        milestones: optimizer steps at which the main lr is multiplied by ``gamma``.
        gamma: lr decay factor.
        grad_clip: max gradient norm of the main loss (0: no clipping).
    """

    def __init__(
        self,
        model_config: str = "small",
        model_kwargs: dict | None = None,
        metric: str = "mse",
        lambdas: Sequence[float] | None = None,
        qualities: Sequence[int] | None = None,
        eval_qualities: Sequence[int] | None = None,
        lr: float = 1e-4,
        aux_lr: float = 1e-3,
        weight_decay: float = 0.0,
        milestones: Sequence[int] = (),
        gamma: float = 0.1,
        grad_clip: float = 1.0,
    ) -> None:
        super().__init__()
        if metric not in METRICS:
            raise ValueError(f"ImageCompressionTask: 'metric' must be one of {METRICS}; got {metric!r}")
        self.save_hyperparameters()
        self.automatic_optimization = False
        kwargs = dict(model_kwargs or {})
        if model_config not in CONFIGS:
            raise ValueError(
                f"ImageCompressionTask: 'model_config' must be one of {sorted(CONFIGS)}; got {model_config!r}"
            )
        num_qualities = kwargs.get("num_qualities", CONFIGS[model_config].num_qualities)
        self.lambdas = list(lambdas) if lambdas is not None else default_lambdas(metric, num_qualities)
        kwargs.setdefault("lambdas", self.lambdas)
        self.model: CMamba = create_cmamba(model_config, **kwargs)
        if len(self.lambdas) != self.model.num_qualities:
            raise ValueError(
                f"ImageCompressionTask: {self.model.num_qualities} qualities need as many lambdas; got {self.lambdas}"
            )
        all_q = list(self.model.qualities)
        self.qualities = list(qualities) if qualities is not None else all_q
        self.eval_qualities = list(eval_qualities) if eval_qualities is not None else sorted({all_q[0], all_q[-1]})
        for name, values in (("qualities", self.qualities), ("eval_qualities", self.eval_qualities)):
            if not values or any(q not in all_q for q in values):
                raise ValueError(f"ImageCompressionTask: '{name}' must be in {all_q}; got {values}")
        self.criterion = RateDistortionLoss(metric)

    def forward(self, x: torch.Tensor, quality: int | torch.Tensor | None = None) -> dict:
        return self.model(x, quality)

    def _lambda(self, quality: torch.Tensor) -> torch.Tensor:
        index = self.model.quality_index(quality, quality.numel(), quality.device)
        return torch.as_tensor(self.lambdas, device=quality.device)[index]

    def _common_step(self, batch, stage: str) -> dict[str, torch.Tensor]:
        if stage == "train":
            x = batch
            quality = sample_qualities(self.qualities, x.shape[0], x.device)
            out = self.model(x, quality)
            losses = self.criterion(out, x, self._lambda(quality))
            metrics = {
                "loss": losses["loss"],
                "bpp": losses["bpp_loss"],
                "mse": losses["mse_loss"],
                "psnr": psnr(out["x_hat"].clamp(0, 1), x).mean(),
            }
            self.log_dict({f"train/{k}": v.detach() for k, v in metrics.items()}, prog_bar=True, batch_size=x.shape[0])
            return losses
        x, sizes = batch
        height, width = (int(v) for v in sizes[0])
        target = x[..., :height, :width]
        with_ms_ssim = min(height, width) >= MS_SSIM_MIN_SIDE
        results: dict[str, list[torch.Tensor]] = {}
        for q in self.eval_qualities:
            quality = torch.full((x.shape[0],), q, device=x.device)
            out = self.model(x, quality)
            x_hat = out["x_hat"].clamp(0, 1)[..., :height, :width]
            per_q = {
                "bpp": bpp_from_likelihoods(out["likelihoods"], height * width).mean(),
                "psnr": psnr(x_hat, target).mean(),
            }
            mse = (x_hat - target).pow(2).mean()
            if with_ms_ssim:
                per_q["ms_ssim"] = ms_ssim(x_hat, target).mean()
            if self.hparams.metric == "mse":
                per_q["loss"] = self.lambdas[q - 1] * 255**2 * mse + per_q["bpp"]
            elif with_ms_ssim:
                per_q["loss"] = self.lambdas[q - 1] * (1 - per_q["ms_ssim"]) + per_q["bpp"]
            for k, v in per_q.items():
                results.setdefault(k, []).append(v)
                self.log(f"{stage}/{k}_q{q}", v, batch_size=x.shape[0])
        summary = {k: torch.stack(v).mean() for k, v in results.items()}
        self.log_dict({f"{stage}/{k}": v for k, v in summary.items()}, prog_bar=stage == "val", batch_size=x.shape[0])
        return summary

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        optimizer, aux_optimizer = self.optimizers()
        losses = self._common_step(batch, "train")
        optimizer.zero_grad()
        self.manual_backward(losses["loss"])
        if self.hparams.grad_clip > 0:
            self.clip_gradients(optimizer, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")
        optimizer.step()
        aux_loss = self.model.aux_loss()
        aux_optimizer.zero_grad()
        self.manual_backward(aux_loss)
        aux_optimizer.step()
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()
        self.log("train/aux_loss", aux_loss.detach(), batch_size=batch.shape[0])
        return losses["loss"].detach()

    def validation_step(self, batch, batch_idx: int) -> None:
        self._common_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._common_step(batch, "test")

    def configure_optimizers(self):
        main, aux = split_parameters(self.model)
        optimizer = torch.optim.Adam(main, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        aux_optimizer = torch.optim.Adam(aux, lr=self.hparams.aux_lr)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(self.hparams.milestones), self.hparams.gamma)
        return [optimizer, aux_optimizer], [{"scheduler": scheduler, "interval": "step"}]

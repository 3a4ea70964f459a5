"""A callback for the DDP test: each rank writes a digest of its parameters and metrics at the end of fit."""
from __future__ import annotations

import json
from pathlib import Path

import lightning as L


class RankDigest(L.Callback):
    def __init__(self, output_dir: str) -> None:
        self.output_dir = Path(output_dir)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        params = [p.detach().double() for p in pl_module.parameters()]
        digest = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "global_step": trainer.global_step,
            "param_sum": float(sum(p.sum() for p in params)),
            "param_abs_sum": float(sum(p.abs().sum() for p in params)),
            "val_loss": float(trainer.callback_metrics["val_loss"]),
        }
        (self.output_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(digest))

"""What every domain's Lightning modules share (no domain code here).

* ``task``: ``SSMTask``, the thin task base (``_common_step``, optimiser / schedule / EMA from one set
  of names, several optimisers, the idiom that lets ``load_from_checkpoint`` rebuild the model);
* ``optim``: parameter groups (weight-decay exclusions, layer-wise lr decay, head lr);
* ``schedules``: warm-up + cosine / poly per step, per-epoch step decay, as Lightning scheduler dicts;
* ``ema``: the weight-EMA mixin;
* ``prediction``: ``DictPredictionWriter``, the base of every prediction writer;
* ``checks``: argument checks with one message format, and the models' opt-in NaN/Inf check;
* ``checkpoint_io``: atomic checkpoint writes;
* ``precision``: the ``TF32`` callback (TF32 in convolutions and matmuls as a run setting);
* ``cuda_graphs``: ``GraphedInference``, inference replayed from CUDA graphs (no host work per forward).

Import the submodules directly (``from ssm_apps.training.task import SSMTask``); this package imports
only ``AtomicCheckpointIO`` so that ``import ssm_apps.training`` stays light.
"""
from .checkpoint_io import AtomicCheckpointIO

__all__ = ["AtomicCheckpointIO"]

# SegMAN-T on ADE20K (150 classes) as mmseg 1.x model pieces built from ssm_apps (no NATTEN, no CUDA build).
#   from mmengine.config import Config; from mmseg.registry import MODELS
#   cfg = Config.fromfile("configs/mmseg/segman_tiny_ade20k.py")
#   backbone, head = MODELS.build(cfg.model.backbone), MODELS.build(cfg.model.decode_head)
# Widths as the official local_configs/segman/tiny/segman_t_ade.py; 6,397,260 parameters.
# mmseg's EncoderDecoder itself needs mmseg.models, which imports mmcv's compiled ops (not in mmcv-lite).
custom_imports = {"imports": ["ssm_apps.integrations.mmseg_autoregister"], "allow_failed_imports": False}
norm_cfg = {"type": "SyncBN", "requires_grad": True}
model = {
    "type": "EncoderDecoder",
    "backbone": {
        "type": "SegMANEncoder",
        "embed_dims": [32, 64, 144, 192], "depths": [2, 2, 4, 2], "num_heads": [1, 2, 4, 8],
        "window_size": [11, 9, 9, 7], "mlp_ratios": [4, 4, 3, 3], "use_rpb": True, "image_size": 224,
        "drop_path_rate": 0.0, "layerscales": [False, False, False, False],
    },
    "decode_head": {
        "type": "SegMANDecoder", "in_channels": [32, 64, 144, 192], "in_index": [0, 1, 2, 3], "channels": 128,
        "feat_proj_dim": 192, "dropout_ratio": 0.1, "num_classes": 150, "norm_cfg": norm_cfg, "align_corners": False,
        "loss_decode": {"type": "CrossEntropyLoss", "use_sigmoid": False, "loss_weight": 1.0},
    },
    "train_cfg": {},
    "test_cfg": {"mode": "whole"},
}

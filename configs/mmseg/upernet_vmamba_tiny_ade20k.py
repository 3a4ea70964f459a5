# VMamba-T (vmamba_tiny_s1l8) + UperNet on ADE20K (150 classes) as mmseg 1.x model pieces built from ssm_apps.
#   from mmengine.config import Config; from mmseg.registry import MODELS
#   cfg = Config.fromfile("configs/mmseg/upernet_vmamba_tiny_ade20k.py")
#   backbone, head = MODELS.build(cfg.model.backbone), MODELS.build(cfg.model.decode_head)
# Head widths as mmseg's upernet_r50 base config used by the official VMamba configs
# (backbone 29.48M + UperNet 31.50M + auxiliary FCN 0.92M = 61,902,572 parameters).
custom_imports = {"imports": ["ssm_apps.integrations.mmseg_autoregister"], "allow_failed_imports": False}
norm_cfg = {"type": "SyncBN", "requires_grad": True}
model = {
    "type": "EncoderDecoder",
    "backbone": {"type": "VMambaBackbone", "arch": "vmamba_tiny_s1l8", "out_indices": (0, 1, 2, 3),
                 "drop_path_rate": 0.2},
    "decode_head": {
        "type": "UperNetHead", "in_channels": [96, 192, 384, 768], "in_index": [0, 1, 2, 3],
        "pool_scales": (1, 2, 3, 6),
        "channels": 512, "dropout_ratio": 0.1, "num_classes": 150, "norm_cfg": norm_cfg, "align_corners": False,
        "loss_decode": {"type": "CrossEntropyLoss", "use_sigmoid": False, "loss_weight": 1.0},
    },
    # the auxiliary FCN head (in_channels 384, in_index 2, channels 256) is ssm_apps.vision.FCNHead;
    # SegmentationModel(..., aux_head=True) builds it
    "train_cfg": {},
    "test_cfg": {"mode": "whole"},
}

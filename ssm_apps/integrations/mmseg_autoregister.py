"""Importing this module calls ``ssm_apps.integrations.mmseg.register()``: for mmseg configs'
``custom_imports = dict(imports=["ssm_apps.integrations.mmseg_autoregister"])``."""
from .mmseg import register

register()

"""Tests of ``ssm_apps.kernels``: the 1-D scan, its Triton kernels, the scan patterns and the fused 2-D / 3-D scan."""

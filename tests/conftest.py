"""pytest set-up: the Triton interpreter switched on before anything imports triton.

The Triton kernels are tested on CPU by Triton's interpreter, which must be on before anything imports
triton (lightning does, through torch._dynamo); pytest imports this file first. Shared helpers live in
``tests/helpers``.
"""
from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

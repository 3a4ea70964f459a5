"""Scan patterns: a 2-D map (or 3-D volume) as K 1-D sequences and back.

``cross_scan`` turns a map (b, c, H, W) into K sequences (b, K, c, L_k) for one
selective scan over K routes ("cross scan"); ``cross_merge`` puts K sequences
back onto the map, summing every route's contribution at its position
("cross merge"). The merge is the exact adjoint of the scan:
``<cross_scan(x), ys> == <x, cross_merge(ys)>``, so each is the other's backward.
The 3-D versions do the same for volumes (b, c, D, H, W).

Every pattern is a precomputed integer index map: a (K, L_k) LongTensor whose
entry [k, i] is the flat position read by route k at step i (``scan_index``).
The PyTorch backend's scan gathers along the flattened map with it, its merge
index-adds along it; the Triton kernels (``patterns.triton``) load int32 maps
derived from it (``maps.route_maps``: the map re-expressed for the unpadded input, and
its inverse, so that the merge is a gather-and-sum). The maps are built once per
(pattern, size, device) and cached; they are the only definition of the routes.

2-D patterns (flat position p = h * W + w, row-major; i is the step along a route):

* ``"cross4"`` (VMamba), K = 4, L_k = H * W:
  k0 row-major, p = i;
  k1 column-major (for each w, all h), p = (i % H) * W + i // H;
  k2 = k0 reversed, p = H * W - 1 - i; k3 = k1 reversed.
* ``"bidi"``, K = 2, L_k = H * W: k0 row-major, k1 = k0 reversed.
* ``"omni8"``, K = 8, L_k = H * W: cross4's four routes, then
  k4 main-diagonal order: positions sorted by (w - h) ascending, ties by h
  ascending (each diagonal walked top-left -> bottom-right, starting with the
  bottom-left corner's one-element diagonal);
  k5 anti-diagonal order: sorted by (h + w) ascending, ties by h ascending
  (starting at the top-left corner);
  k6 = k4 reversed, k7 = k5 reversed. (k4/k5 have no short closed form; the
  map is built by sorting the unique integer keys (w - h + H - 1) * H + h and
  (h + w) * H + h.)
* ``"atrous"`` (EfficientVMamba's ES2D "efficient scan", step 2), K = 4:
  the map is first zero-padded on the bottom and right to even sizes
  Hp = 2 * ceil(H / 2), Wp = 2 * ceil(W / 2), giving four dilated sub-grids of
  h2 x w2 = (Hp / 2) x (Wp / 2) cells, L_k = h2 * w2 = Lp / 4. Positions in
  ``scan_index("atrous", (H, W))`` index the PADDED grid, p = h * Wp + w:
  k0 even rows, even cols, row-major:    h = 2 (i // w2),     w = 2 (i % w2);
  k1 odd rows,  even cols, column-major: h = 2 (i % h2) + 1,  w = 2 (i // h2);
  k2 even rows, odd cols,  row-major:    h = 2 (i // w2),     w = 2 (i % w2) + 1;
  k3 odd rows,  odd cols,  column-major: h = 2 (i % h2) + 1,  w = 2 (i // h2) + 1.
  The merge writes each route back onto its own sub-grid of the padded grid
  (the four sub-grids tile it, so every padded cell gets exactly one value)
  and crops to (H, W); cropping is the adjoint of the zero padding.
  This matches the official EfficientVMamba code (``EfficientScan`` /
  ``EfficientMerge`` in classification/models/vmamba_efficient.py, step_size 2):
  same sub-grid order, routes 1 and 3 read the transposed (column-major)
  sub-grid, zero padding on the right/bottom up to a multiple of the step before
  sub-sampling, and the merge crops to the original size. The official merge
  returns the map flattened to (b, c, H * W); here it is (b, c, H, W).

3-D pattern (flat position p = d * H * W + h * W + w):

* ``"tri6"``, K = 6, L = D * H * W: k0 D-H-W order (for d, for h, for w: p = i);
  k1 H-W-D order (for h, for w, for d): p = (i % D) * H * W + i // D;
  k2 W-D-H order (for w, for d, for h):
  p = ((i // H) % D) * H * W + (i % H) * W + i // (D * H);
  k3..k5 = k0..k2 reversed.

Dtypes: any floating dtype. The scan only moves values, so it is exact in every
dtype. The merge's summation order is fixed and the same on every backend: at each
position, acc = 0, then acc = acc + route k's value for k = 0, 1, ..., K - 1 (routes
that do not visit the position add nothing), in float32 for float16/bfloat16 inputs
(rounded once to the input dtype at the end) and in the input dtype otherwise. (In
PyTorch: one index_add per route, each a permutation without repeated indices.)

Autograd: the scan and the merge are exact adjoints, so each op is a
``torch.autograd.Function`` whose backward is the other op (on the same backend).
Gradients thus follow the merge's fixed summation order too -- they do not depend
on how a generic reduction would order the K-fold sum -- and are bit-identical
across backends; double backward works (the backward is itself differentiable).

Backends: ``backend="torch"`` (gather / index_add, any device) or ``"triton"``
(kernels in ``patterns.triton``, CUDA; they load int32 maps derived from the same
index maps, see ``maps.route_maps``); ``None`` picks Triton for CUDA tensors when it is
available (``_backend.triton_available``) and PyTorch otherwise. Both give
bit-identical results.

Files: ``maps`` (the index maps and the int32 route maps of the kernels), ``checks`` (argument checks),
``torch`` (gather / index_add), ``triton`` (the two Triton kernels), ``autograd`` (the scan and merge
Functions, dispatching through a backend table), ``api`` (the public functions).
"""
from .api import (
    PATTERN_BACKENDS,
    cross_merge,
    cross_merge_3d,
    cross_merge_3d_triton,
    cross_merge_triton,
    cross_scan,
    cross_scan_3d,
    cross_scan_3d_triton,
    cross_scan_triton,
    scan_index,
    scan_index_3d,
    scan_length,
)
from .maps import PATTERNS_2D, PATTERNS_3D

__all__ = [
    "PATTERN_BACKENDS",
    "PATTERNS_2D",
    "PATTERNS_3D",
    "cross_merge",
    "cross_merge_3d",
    "cross_merge_3d_triton",
    "cross_merge_triton",
    "cross_scan",
    "cross_scan_3d",
    "cross_scan_3d_triton",
    "cross_scan_triton",
    "scan_index",
    "scan_index_3d",
    "scan_length",
]

"""CMamba: learned image compression with content-adaptive state space models.

Built from the description in "CMamba: Learned Image Compression with State Space Models"
(2025), which has no public code. The model is a CompressAI ``CompressionModel``::

    x -> g_a -> y (* gain[q]) -> h_a -> z (* hyper_gain[q]) -> EntropyBottleneck -> z_hat
    z_hat (* hyper_inv_gain[q]) -> h_s -> hyper (means, scales features, 2M channels)
    y, hyper -> CAE (5 slices, each: channel context -> anchors -> SSM spatial context
                     -> non-anchors -> latent residual prediction) -> y_hat
    y_hat (* inv_gain[q]) -> g_s -> x_hat

Choices where the paper is silent (CompressAI / MambaIC / MambaVC conventions), stated once here:

* **Transforms.** ``g_a``: conv5x5/2 + GDN (1/2 resolution, no SSM there: it is the costliest
  resolution and local), conv3x3/2 + GDN + ``depths[0]`` CA-SSM blocks (1/4), conv3x3/2 + GDN +
  ``depths[1]`` blocks (1/8), conv3x3/2 to M channels (1/16) followed by ``depths[2]`` blocks: a GDN
  after every down-sampling conv but the last, as in CompressAI's transforms, so that no two
  convolutions meet without a non-linearity between them when a stage has no block. ``g_s`` mirrors
  it with transposed convs, each but the last followed by inverse GDN. 16x down-sampling in ``g_a``,
  4x more in ``h_a``: images are padded to a multiple of 64.
* **CA-SSM block.** ``u = LayerNorm2d(x)``; SSM branch ``F_ssm = SS2D(u)`` (VMamba "v05_noz",
  cross4 routes, ``d_state`` 4 and ``ssm_ratio`` 1 by default); CNN branch a residual block
  ``F_cnn = u + conv3x3(GELU(conv3x3(u)))``; content-adaptive weights from global average pooling
  and an MLP (C -> C/4 -> 2C), turned into per-channel ``alpha, beta`` by a softmax over the two
  branches (so ``alpha + beta = 1``); output ``x + w(alpha * F_ssm + beta * F_cnn)`` with ``w`` a
  1x1 conv. No extra FFN (kept small for the training budget).
* **Hyperprior.** ``h_a``: conv3x3 (M -> N), GELU, conv5x5/2, GELU, conv5x5/2 (z has N channels);
  ``h_s``: one branch of transposed conv5x5/2, GELU, transposed conv5x5/2 (to 3N/2), GELU,
  conv3x3 to 2M channels (mean and scale features; MambaIC/CompressAI use two such branches).
* **CAE entropy model.** M channels in ``num_slices`` = 5 equal slices, coded in order
  (channel-wise autoregression, Minnen & Singh 2020). In each slice a checkerboard split: anchors
  ((h + w) even) are coded from the channel context alone (hyper features + decoded slices, a
  3-layer conv net); the non-anchors add an SSM spatial context: conv3x3 and an SS2D residual
  block over the decoded anchors of the slice (zeros elsewhere), so the SSM sees the whole
  decoded anchor field at once (global, not causal, which the two-pass order allows). The channel
  context net is conv3x3, GELU, conv3x3, GELU, conv1x1; a 1x1 conv net maps (channel context,
  spatial context) to Gaussian means and scales. Latent residual prediction
  ``0.5 * tanh(lrp(channel-context input, y_hat slice))`` (lrp: conv1x1, GELU, conv3x3) is added
  to every slice.
* **Rates.** ``num_qualities`` > 1 makes one variable-rate model with gain units (Cui et al.,
  CVPR 2021): a learned per-quality channel gain on y and z and inverse gains before h_s and g_s,
  initialised to ``sqrt(lambda_q / lambda_mid)`` on y (so the quantisation step starts close to its
  rate-distortion optimum, which scales like ``lambda^-1/2``) and 1 on z; ``num_qualities`` = 1 is
  a plain fixed-rate model. Qualities are numbered from 1 (lowest rate) as in CompressAI's zoo.
* **Entropy coding.** CompressAI's ``EntropyBottleneck`` for z and one ``GaussianConditional``
  (scale table of 64 scales 0.11..256) for y, through its rANS coder; the y symbols of all slices
  and passes go into one rANS stream. ``compress`` computes every entropy parameter from the same
  dequantised values, with the same ops and shapes, as ``decompress`` will (z_hat is re-decoded
  from its string), which makes decoding bit-exact on the same device and dtype when run under
  :func:`deterministic_inference` (which also switches the SSMs to the PyTorch scan: the fused
  Triton scan adds its four routes with float atomics, in an order that varies).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from compressai.ans import BufferedRansEncoder, RansDecoder
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import GDN
from compressai.models import CompressionModel
from compressai.ops import quantize_ste
from torch import nn

from ..layers import SS2D
from ..layers.ss2d import LayerNorm2d

# cuBLAS is deterministic under torch.use_deterministic_algorithms only with a fixed workspace
# configuration, read when CUDA starts: set it before that unless the user chose one.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

SCALES_MIN, SCALES_MAX, SCALES_LEVELS = 0.11, 256.0, 64
#: MSE presets, quality 1..6 (CompressAI's zoo lambdas).
MSE_LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483)
#: MS-SSIM presets, quality 1..6 (CompressAI's zoo lambdas for the ms-ssim metric).
MS_SSIM_LAMBDAS = (2.40, 4.58, 8.73, 16.64, 31.73, 60.50)
PAD_MULTIPLE = 64


def get_scale_table() -> torch.Tensor:
    """64 logarithmically spaced scales in [0.11, 256] (CompressAI's default table)."""
    return torch.exp(torch.linspace(math.log(SCALES_MIN), math.log(SCALES_MAX), SCALES_LEVELS))


def conv(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)


def deconv(cin: int, cout: int, kernel: int = 3, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, kernel, stride=stride, padding=kernel // 2, output_padding=stride - 1)


#: Selective-scan backend while coding: the fused Triton kernel sums its four routes with float
#: atomics (an order that varies from run to run); the PyTorch chain gives the same bits every time.
DETERMINISTIC_SCAN_BACKEND = "torch"


@contextlib.contextmanager
def deterministic_inference(model: nn.Module | None = None) -> Iterator[None]:
    """No grad, deterministic algorithms (cuDNN, CUDA cumsum), no autotuning, no TF32 and, for every SS2D of
    ``model``, the deterministic scan backend: the same ops give the same bits in the encoder and
    the decoder. Restores the previous settings afterwards."""
    saved = (
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cuda.matmul.allow_tf32,
    )
    saved_algorithms = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    torch.use_deterministic_algorithms(True, warn_only=True)  # e.g. CUDA cumsum in the PyTorch scan
    scans = [m for m in model.modules() if isinstance(m, SS2D)] if model is not None else []
    backends = [m.scan_backend for m in scans]
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    for m in scans:
        m.scan_backend = DETERMINISTIC_SCAN_BACKEND
    try:
        with torch.no_grad():
            yield
    finally:
        (
            torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark,
            torch.backends.cudnn.allow_tf32,
            torch.backends.cuda.matmul.allow_tf32,
        ) = saved
        torch.use_deterministic_algorithms(saved_algorithms[0], warn_only=saved_algorithms[1])
        for m, backend in zip(scans, backends):
            m.scan_backend = backend


class CASSMBlock(nn.Module):
    """Content-adaptive SSM block: ``x + w(alpha * SS2D(u) + beta * ResCNN(u))``, ``u = LN(x)``.

    Args:
        dim: channels C (input and output (B, C, H, W)).
        d_state: SS2D state size.
        ssm_ratio: SS2D inner width ratio.
        mlp_ratio: hidden width of the weight MLP is ``max(8, dim // mlp_ratio)``.
    """

    def __init__(self, dim: int, d_state: int = 4, ssm_ratio: float = 1.0, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm = LayerNorm2d(dim)
        self.ssm = SS2D(dim, d_state=d_state, ssm_ratio=ssm_ratio, forward_type="v05_noz")
        self.cnn = nn.Sequential(conv(dim, dim), nn.GELU(), conv(dim, dim))
        hidden = max(8, dim // mlp_ratio)
        self.weight_mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, 2 * dim))
        self.fuse = nn.Conv2d(dim, dim, 1)

    def branch_weights(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """alpha, beta: (B, C, 1, 1) each, softmax over the two branches per channel."""
        logits = self.weight_mlp(u.mean(dim=(2, 3))).view(u.shape[0], 2, u.shape[1])
        weights = logits.softmax(dim=1)[..., None, None]
        return weights[:, 0], weights[:, 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.norm(x)
        alpha, beta = self.branch_weights(u)
        return x + self.fuse(alpha * self.ssm(u) + beta * (u + self.cnn(u)))


def ca_stage(dim: int, depth: int, d_state: int, ssm_ratio: float) -> list[nn.Module]:
    return [CASSMBlock(dim, d_state, ssm_ratio) for _ in range(depth)]


class SpatialContext(nn.Module):
    """SSM spatial context over the decoded anchors of a slice: conv3x3, SS2D residual block, 1x1.

    Args:
        slice_channels: channels S of the slice (input (B, S, h, w), zeros off the anchors).
        out_channels: context channels (output (B, out_channels, h, w)).
        d_state: SS2D state size.
    """

    def __init__(self, slice_channels: int, out_channels: int, d_state: int = 4) -> None:
        super().__init__()
        self.proj_in = conv(slice_channels, out_channels)
        self.norm = LayerNorm2d(out_channels)
        self.ssm = SS2D(out_channels, d_state=d_state, ssm_ratio=1.0, forward_type="v05_noz")
        self.proj_out = nn.Conv2d(out_channels, out_channels, 1)

    def forward(self, anchors: torch.Tensor) -> torch.Tensor:
        h = self.proj_in(anchors)
        return self.proj_out(h + self.ssm(self.norm(h)))


def checkerboard_mask(height: int, width: int, device: torch.device) -> torch.Tensor:
    """(h, w) bool, True on the anchors ((row + col) even)."""
    rows = torch.arange(height, device=device)[:, None]
    cols = torch.arange(width, device=device)[None, :]
    return (rows + cols) % 2 == 0


@dataclass(frozen=True)
class CMambaConfig:
    """Architecture of a CMamba model (see the module docstring)."""

    N: int = 128
    M: int = 320
    depths: tuple[int, int, int] = (2, 2, 2)
    num_slices: int = 5
    d_state: int = 4
    ssm_ratio: float = 1.0
    context_channels: int = 192
    spatial_channels: int = 64
    num_qualities: int = 6


#: Named configurations: the paper-sized one and a small one that trains in a few GPU minutes.
CONFIGS: dict[str, CMambaConfig] = {
    "base": CMambaConfig(),
    "small": CMambaConfig(N=64, M=160, depths=(0, 1, 2), context_channels=64, spatial_channels=32),
    "tiny": CMambaConfig(N=16, M=40, depths=(1, 0, 0), context_channels=16, spatial_channels=8, num_qualities=2),
}


class CMamba(CompressionModel):
    """CMamba learned image codec (CompressAI ``CompressionModel``).

    Args:
        N: channels of the transforms and of z.
        M: channels of y (a multiple of ``num_slices``).
        depths: CA-SSM blocks at 1/4, 1/8 and 1/16 resolution (in g_a; mirrored in g_s).
        num_slices: channel slices of the CAE entropy model.
        d_state: SS2D state size of every SSM.
        ssm_ratio: SS2D inner width ratio in the CA-SSM blocks.
        context_channels: hidden and output width of each slice's channel-context net.
        spatial_channels: width of each slice's SSM spatial context.
        num_qualities: gain-unit rates (1 = fixed-rate model).
        lambdas: the rate-distortion lambda of each quality (length ``num_qualities``); only the gain
            initialisation uses it. Default: the last ``num_qualities`` MSE presets.
        qualities: the quality numbers the model serves, one per rate in increasing order (length
            ``num_qualities``), e.g. ``[3]`` for a fixed-rate model trained at preset 3. Default
            ``1..num_qualities``.

    Shapes: ``forward(x)`` with x (B, 3, H, W) in [0, 1], H and W multiples of 64.
    """

    def __init__(
        self,
        N: int = 128,
        M: int = 320,
        depths: Sequence[int] = (2, 2, 2),
        num_slices: int = 5,
        d_state: int = 4,
        ssm_ratio: float = 1.0,
        context_channels: int = 192,
        spatial_channels: int = 64,
        num_qualities: int = 6,
        lambdas: Sequence[float] | None = None,
        qualities: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if len(depths) != 3:
            raise ValueError(f"CMamba: 'depths' needs 3 entries (1/4, 1/8, 1/16); got {tuple(depths)}")
        if num_slices < 1 or M % num_slices:
            raise ValueError(f"CMamba: 'M' ({M}) must be a multiple of 'num_slices' ({num_slices})")
        if num_qualities < 1:
            raise ValueError(f"CMamba: 'num_qualities' must be >= 1; got {num_qualities}")
        if lambdas is None:
            lambdas = MSE_LAMBDAS[-num_qualities:] if num_qualities <= len(MSE_LAMBDAS) else None
        if lambdas is None or len(lambdas) != num_qualities:
            raise ValueError(f"CMamba: 'lambdas' needs {num_qualities} values; got {lambdas}")
        qualities = tuple(range(1, num_qualities + 1)) if qualities is None else tuple(int(q) for q in qualities)
        if len(qualities) != num_qualities or any(b <= a for a, b in zip(qualities, qualities[1:])) or qualities[0] < 1:
            raise ValueError(
                f"CMamba: 'qualities' needs {num_qualities} increasing numbers >= 1; got {list(qualities)}"
            )
        self.qualities = qualities
        self.N, self.M, self.num_slices, self.num_qualities = N, M, num_slices, num_qualities
        d1, d2, d3 = depths
        self.g_a = nn.Sequential(
            conv(3, N, 5, 2),
            GDN(N),
            conv(N, N, 3, 2),
            GDN(N),
            *ca_stage(N, d1, d_state, ssm_ratio),
            conv(N, N, 3, 2),
            GDN(N),
            *ca_stage(N, d2, d_state, ssm_ratio),
            conv(N, M, 3, 2),
            *ca_stage(M, d3, d_state, ssm_ratio),
        )
        self.g_s = nn.Sequential(
            *ca_stage(M, d3, d_state, ssm_ratio),
            deconv(M, N, 3),
            GDN(N, inverse=True),
            *ca_stage(N, d2, d_state, ssm_ratio),
            deconv(N, N, 3),
            GDN(N, inverse=True),
            *ca_stage(N, d1, d_state, ssm_ratio),
            deconv(N, N, 3),
            GDN(N, inverse=True),
            deconv(N, 3, 5),
        )
        self.h_a = nn.Sequential(conv(M, N, 3), nn.GELU(), conv(N, N, 5, 2), nn.GELU(), conv(N, N, 5, 2))
        self.h_s = nn.Sequential(
            deconv(N, N, 5),
            nn.GELU(),
            deconv(N, N * 3 // 2, 5),
            nn.GELU(),
            conv(N * 3 // 2, 2 * M, 3),
        )
        S = M // num_slices
        self.channel_context = nn.ModuleList(
            nn.Sequential(
                conv(2 * M + i * S, context_channels),
                nn.GELU(),
                conv(context_channels, context_channels),
                nn.GELU(),
                nn.Conv2d(context_channels, context_channels, 1),
            )
            for i in range(num_slices)
        )
        self.spatial_context = nn.ModuleList(SpatialContext(S, spatial_channels, d_state) for _ in range(num_slices))
        self.entropy_parameters = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(context_channels + spatial_channels, context_channels, 1),
                nn.GELU(),
                nn.Conv2d(context_channels, 2 * S, 1),
            )
            for _ in range(num_slices)
        )
        self.lrp = nn.ModuleList(
            nn.Sequential(nn.Conv2d(2 * M + (i + 1) * S, context_channels, 1), nn.GELU(), conv(context_channels, S))
            for i in range(num_slices)
        )
        self.spatial_channels = spatial_channels
        mid = lambdas[len(lambdas) // 2]
        init = torch.tensor([math.sqrt(lam / mid) for lam in lambdas])[:, None].repeat(1, M)
        self.gain = nn.Parameter(init.clone())
        self.inv_gain = nn.Parameter(1.0 / init)
        self.hyper_gain = nn.Parameter(torch.ones(num_qualities, N))
        self.hyper_inv_gain = nn.Parameter(torch.ones(num_qualities, N))
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional(None)

    # ------------------------------------------------------------------ rates
    def quality_index(self, quality: int | torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
        """(B,) 0-based rate indexes from quality numbers of ``self.qualities`` (None = the highest)."""
        if quality is None:
            quality = self.qualities[-1]
        q = torch.as_tensor(quality, device=device).long().reshape(-1)
        if q.numel() == 1:
            q = q.expand(batch)
        if q.numel() != batch:
            raise ValueError(f"CMamba: 'quality' needs 1 or {batch} values; got {q.numel()}")
        served = torch.tensor(self.qualities, device=device)
        match = q[:, None] == served
        if not bool(match.any(1).all()):
            raise ValueError(f"CMamba: 'quality' must be one of {list(self.qualities)}; got {q.tolist()}")
        return match.long().argmax(1)

    @staticmethod
    def _gain(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return table[index][:, :, None, None]

    # --------------------------------------------------------- entropy model
    def _slice_params(
        self, i: int, context: torch.Tensor, spatial: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if spatial is None:
            shape = (context.shape[0], self.spatial_channels, *context.shape[2:])
            spatial = context.new_zeros(shape)
        means, scales = self.entropy_parameters[i](torch.cat([context, spatial], dim=1)).chunk(2, dim=1)
        return means, scales

    def _lrp(self, i: int, context_input: torch.Tensor, y_hat_slice: torch.Tensor) -> torch.Tensor:
        return y_hat_slice + 0.5 * torch.tanh(self.lrp[i](torch.cat([context_input, y_hat_slice], dim=1)))

    def forward(self, x: torch.Tensor, quality: int | torch.Tensor | None = None) -> dict:
        """x (B, 3, H, W) in [0, 1] -> {"x_hat": (B, 3, H, W), "likelihoods": {"y", "z"}}."""
        q = self.quality_index(quality, x.shape[0], x.device)
        y = self.g_a(x) * self._gain(self.gain, q)
        z = self.h_a(y) * self._gain(self.hyper_gain, q)
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        hyper = self.h_s(z_hat * self._gain(self.hyper_inv_gain, q))
        anchor = checkerboard_mask(*y.shape[-2:], device=y.device)
        y_hat_slices: list[torch.Tensor] = []
        likelihoods = []
        for i, y_slice in enumerate(y.chunk(self.num_slices, dim=1)):
            context_input = torch.cat([hyper, *y_hat_slices], dim=1)
            context = self.channel_context[i](context_input)
            means_a, scales_a = self._slice_params(i, context, None)
            anchors_hat = (quantize_ste(y_slice - means_a) + means_a) * anchor
            means_n, scales_n = self._slice_params(i, context, self.spatial_context[i](anchors_hat))
            means = torch.where(anchor, means_a, means_n)
            scales = torch.where(anchor, scales_a, scales_n)
            _, slice_likelihoods = self.gaussian_conditional(y_slice, scales, means)
            likelihoods.append(slice_likelihoods)
            y_hat_slices.append(self._lrp(i, context_input, quantize_ste(y_slice - means) + means))
        y_hat = torch.cat(y_hat_slices, dim=1)
        x_hat = self.g_s(y_hat * self._gain(self.inv_gain, q))
        return {"x_hat": x_hat, "likelihoods": {"y": torch.cat(likelihoods, dim=1), "z": z_likelihoods}}

    def update(
        self, scale_table: torch.Tensor | None = None, force: bool = False, update_quantiles: bool = False
    ) -> bool:
        """Build the CDF tables of both entropy models (call once after training)."""
        return super().update(get_scale_table() if scale_table is None else scale_table, force, update_quantiles)

    # ------------------------------------------------------- real bitstreams
    def _code_slices(
        self, hyper: torch.Tensor, y: torch.Tensor | None, decoder: RansDecoder | None
    ) -> tuple[torch.Tensor, list[int], list[int]]:
        """The CAE pass shared by compress (y given) and decompress (decoder given): one code path,
        so the entropy parameters are computed identically on both sides."""
        gc = self.gaussian_conditional
        cdf, cdf_lengths, offsets = gc.quantized_cdf.tolist(), gc.cdf_length.tolist(), gc.offset.tolist()
        height, width = hyper.shape[-2:]
        anchor = checkerboard_mask(height, width, hyper.device)
        S = self.M // self.num_slices
        symbols_out: list[int] = []
        indexes_out: list[int] = []
        y_slices = y.chunk(self.num_slices, dim=1) if y is not None else [None] * self.num_slices
        y_hat_slices: list[torch.Tensor] = []
        for i, y_slice in enumerate(y_slices):
            context_input = torch.cat([hyper, *y_hat_slices], dim=1)
            context = self.channel_context[i](context_input)
            y_hat_slice = hyper.new_zeros((1, S, height, width))
            spatial = None
            for mask in (anchor, ~anchor):
                means, scales = self._slice_params(i, context, spatial)
                indexes = gc.build_indexes(scales[..., mask])
                means_m = means[..., mask]
                if decoder is None:
                    symbols = gc.quantize(y_slice[..., mask], "symbols", means_m)
                    symbols_out += symbols.reshape(-1).tolist()
                    indexes_out += indexes.reshape(-1).tolist()
                else:
                    decoded = decoder.decode_stream(indexes.reshape(-1).tolist(), cdf, cdf_lengths, offsets)
                    symbols = torch.tensor(decoded, device=hyper.device, dtype=torch.int32).reshape(means_m.shape)
                    symbols_out += decoded
                y_hat_slice[..., mask] = gc.dequantize(symbols, means_m)
                if spatial is None:
                    spatial = self.spatial_context[i](y_hat_slice)
            y_hat_slices.append(self._lrp(i, context_input, y_hat_slice))
        return torch.cat(y_hat_slices, dim=1), symbols_out, indexes_out

    def compress(self, x: torch.Tensor, quality: int | None = None) -> dict:
        """x (1, 3, H, W) in [0, 1], H, W multiples of 64 -> {"strings": [[y], [z]], "shape": z (h, w),
        "y_hat": the dequantised latent the decoder will rebuild (before the inverse gain)}."""
        if x.shape[0] != 1:
            raise ValueError(f"CMamba.compress codes one image at a time; got a batch of {x.shape[0]}")
        q = self.quality_index(quality, 1, x.device)
        y = self.g_a(x) * self._gain(self.gain, q)
        z = self.h_a(y) * self._gain(self.hyper_gain, q)
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        hyper = self.h_s(z_hat * self._gain(self.hyper_inv_gain, q))
        y_hat, symbols, indexes = self._code_slices(hyper, y, None)
        gc = self.gaussian_conditional
        encoder = BufferedRansEncoder()
        encoder.encode_with_indexes(
            symbols, indexes, gc.quantized_cdf.tolist(), gc.cdf_length.tolist(), gc.offset.tolist()
        )
        return {"strings": [[encoder.flush()], z_strings], "shape": tuple(z.shape[-2:]), "y_hat": y_hat}

    def decompress(self, strings: list, shape: Sequence[int], quality: int | None = None) -> dict:
        """Inverse of :meth:`compress`: {"x_hat": (1, 3, 64 h, 64 w) clamped to [0, 1]}."""
        if len(strings) != 2 or len(strings[0]) != 1 or len(strings[1]) != 1:
            raise ValueError("CMamba.decompress needs strings [[y_string], [z_string]] of one image")
        device = self.gain.device
        q = self.quality_index(quality, 1, device)
        z_hat = self.entropy_bottleneck.decompress(strings[1], tuple(shape))
        hyper = self.h_s(z_hat * self._gain(self.hyper_inv_gain, q))
        decoder = RansDecoder()
        decoder.set_stream(strings[0][0])
        y_hat, _, _ = self._code_slices(hyper, None, decoder)
        return {"x_hat": self.synthesize(y_hat, quality), "y_hat": y_hat}

    def synthesize(self, y_hat: torch.Tensor, quality: int | None = None) -> torch.Tensor:
        """g_s of a (dequantised) latent at a quality, clamped to [0, 1]."""
        q = self.quality_index(quality, y_hat.shape[0], y_hat.device)
        return self.g_s(y_hat * self._gain(self.inv_gain, q)).clamp_(0, 1)


def create_cmamba(config: str | CMambaConfig = "base", **overrides) -> CMamba:
    """A CMamba from a named configuration ("base", "small", "tiny") or a ``CMambaConfig``,
    with keyword overrides (e.g. ``num_qualities=1, lambdas=[0.013]``)."""
    if isinstance(config, str):
        if config not in CONFIGS:
            raise ValueError(f"create_cmamba: 'config' must be one of {sorted(CONFIGS)}; got {config!r}")
        config = CONFIGS[config]
    kwargs = {**config.__dict__, **overrides}
    return CMamba(**kwargs)

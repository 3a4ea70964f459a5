"""Images to ``.ssmc`` bytes and back with a learned codec.

``compress(model, image) -> bytes`` and ``decompress(data, model) -> uint8 (H, W, 3)``. Any image
size (replicate-padded to a multiple of 64, cropped back), RGB, grayscale (coded as RGB; the
header says so and ``read_image``/``write_image`` restore the single channel) and RGBA (alpha
dropped, with a warning). Encoder and decoder run under ``deterministic_inference``: on the same
device and dtype the decoder rebuilds the encoder's reconstruction bit for bit; the header carries
the reconstruction's CRC-32, so a decoder that drifts (another device or library build) raises
instead of returning a wrong image.
"""

from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .cmamba import PAD_MULTIPLE, CMamba, deterministic_inference
from .container import BitstreamError, Header, pack, unpack, weights_hash

_MODES = {"RGB": "rgb", "L": "gray", "RGBA": "rgba", "LA": "gray", "P": "rgb", "CMYK": "rgb", "YCbCr": "rgb"}


@dataclass(frozen=True)
class EncodeResult:
    """``data``: the .ssmc bytes; ``reconstruction``: the decoder's output (uint8 (H, W, 3));
    ``header``: what the file says."""

    data: bytes
    reconstruction: np.ndarray
    header: Header

    @property
    def bpp(self) -> float:
        """Bits per pixel of the whole file (header included)."""
        return 8 * len(self.data) / (self.header.height * self.header.width)


def read_image(path: str | Path) -> tuple[np.ndarray, str]:
    """An 8-bit PNG/JPEG/TIFF/... file -> (uint8 (H, W, 3), colour mode "rgb" | "gray" | "rgba").

    Raises:
        ValueError: unreadable file, or not 8 bits per channel.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode not in _MODES:
                raise ValueError(
                    f"{path}: image mode {mode!r} is not 8 bits per channel (expected RGB, L, RGBA, LA or P)"
                )
            colour = _MODES[mode]
            if mode == "P" and "transparency" in img.info:
                colour = "rgba"
            rgb = img.convert("RGB")
    except (OSError, SyntaxError) as err:
        raise ValueError(f"{path}: cannot read the image ({err})") from err
    return np.asarray(rgb, dtype=np.uint8).copy(), colour


def write_image(path: str | Path, image: np.ndarray, colour_mode: str = "rgb") -> None:
    """uint8 (H, W, 3) -> a file (format from the suffix); grayscale written as one channel."""
    img = Image.fromarray(np.ascontiguousarray(image), mode="RGB")
    if colour_mode == "gray":
        img = img.convert("L")
    img.save(path)


def as_rgb(image: np.ndarray | Image.Image) -> tuple[np.ndarray, str]:
    """uint8 (H, W), (H, W, 1), (H, W, 3), (H, W, 4) or a PIL image -> (uint8 (H, W, 3), colour mode)."""
    if isinstance(image, Image.Image):
        colour = _MODES.get(image.mode)
        if colour is None:
            raise ValueError(f"image mode {image.mode!r} is not 8 bits per channel")
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy(), colour
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (8 bits per channel); got {array.dtype}")
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 1):
        return np.repeat(array.reshape(*array.shape[:2], 1), 3, axis=2), "gray"
    if array.ndim == 3 and array.shape[2] == 3:
        return array, "rgb"
    if array.ndim == 3 and array.shape[2] == 4:
        return np.ascontiguousarray(array[..., :3]), "rgba"
    raise ValueError(f"image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got shape {array.shape}")


def _to_tensor(rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    x = torch.tensor(rgb).permute(2, 0, 1)[None].to(device=device, dtype=torch.float32) / 255
    height, width = rgb.shape[:2]
    pad_h, pad_w = (-height) % PAD_MULTIPLE, (-width) % PAD_MULTIPLE
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else x


def _to_uint8(x_hat: torch.Tensor, height: int, width: int) -> np.ndarray:
    x = x_hat[0, :, :height, :width].clamp(0, 1).mul(255).round().to(torch.uint8)
    return x.permute(1, 2, 0).cpu().numpy()


def image_crc(image: np.ndarray) -> int:
    """CRC-32 of a uint8 (H, W, 3) image's bytes (row-major)."""
    return zlib.crc32(np.ascontiguousarray(image).tobytes())


def _model_device(model: CMamba) -> torch.device:
    return next(model.parameters()).device


def model_id(model: CMamba) -> str:
    """The id written into headers: ``model.codec_id`` (set by the loaders) or "custom-cmamba"."""
    return getattr(model, "codec_id", "custom-cmamba")


def _check_ready(model: CMamba) -> None:
    if model.training:
        raise ValueError("the codec model is in training mode; call model.eval() (and model.update()) first")
    if model.gaussian_conditional.quantized_cdf.numel() == 0 or model.entropy_bottleneck.quantized_cdf.numel() == 0:
        raise ValueError("the codec model has no CDF tables; call model.update(force=True) after training")


def encode(
    model: CMamba, image: np.ndarray | Image.Image, quality: int | None = None, colour_mode: str | None = None
) -> EncodeResult:
    """Compress an image and also return the reconstruction the decoder will produce.

    Args:
        model: a CMamba in eval mode with CDF tables (``model.update()``).
        image: uint8 (H, W[, C]) array or PIL image; grayscale and RGBA are converted (RGBA: alpha
            dropped, with a warning).
        quality: one of ``model.qualities`` (None: the highest).
        colour_mode: overrides the detected mode in the header (e.g. "gray" from ``read_image``).
    """
    _check_ready(model)
    rgb, detected = as_rgb(image)
    colour_mode = colour_mode or detected
    if colour_mode == "rgba":
        warnings.warn("RGBA image: the alpha channel is dropped, RGB is coded", stacklevel=2)
    quality = model.qualities[-1] if quality is None else int(quality)
    model.quality_index(quality, 1, torch.device("cpu"))  # range check with a clear error
    height, width = rgb.shape[:2]
    with deterministic_inference(model):
        out = model.compress(_to_tensor(rgb, _model_device(model)), quality=quality)
        reconstruction = _to_uint8(model.synthesize(out["y_hat"], quality), height, width)
    header = Header(
        model_id(model), weights_hash(model), quality, height, width, colour_mode, image_crc(reconstruction)
    )
    y_string, z_string = out["strings"][0][0], out["strings"][1][0]
    return EncodeResult(pack(header, [z_string, y_string]), reconstruction, header)


def compress(model: CMamba, image: np.ndarray | Image.Image, quality: int | None = None) -> bytes:
    """Compress an image to the bytes of a .ssmc file (see ``encode``)."""
    return encode(model, image, quality).data


def read_header(data: bytes) -> Header:
    """The header of .ssmc bytes (after the magic, version, length and CRC checks)."""
    return unpack(data)[0]


def decompress(data: bytes, model: CMamba) -> np.ndarray:
    """.ssmc bytes -> uint8 (H, W, 3).

    Raises:
        BitstreamError: corrupted/truncated data, or data made with another model or other weights.
    """
    _check_ready(model)
    header, payloads = unpack(data)
    if header.model_id != model_id(model) or header.weights_hash != weights_hash(model):
        raise BitstreamError(
            f"the file was made with model {header.model_id!r} (weights {header.weights_hash.hex()}); "
            f"the given model is {model_id(model)!r} (weights {weights_hash(model).hex()})"
        )
    if len(payloads) != 2:
        raise BitstreamError(f"corrupted .ssmc file: {len(payloads)} payloads, a CMamba file has 2")
    if header.quality not in model.qualities:
        raise BitstreamError(f"the file's quality {header.quality} is not one of the model's {list(model.qualities)}")
    z_shape = (-(-header.height // PAD_MULTIPLE), -(-header.width // PAD_MULTIPLE))
    z_string, y_string = payloads
    with deterministic_inference(model):
        try:
            out = model.decompress([[y_string], [z_string]], z_shape, quality=header.quality)
        except (RuntimeError, ValueError) as err:
            raise BitstreamError(f"corrupted .ssmc payload: {err}") from err
    image = _to_uint8(out["x_hat"], header.height, header.width)
    if image_crc(image) != header.image_crc:
        raise BitstreamError(
            "the decoded image differs from the encoder's reconstruction (image CRC mismatch): decode on the "
            "device and dtype the file was encoded with"
        )
    return image

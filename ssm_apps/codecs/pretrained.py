"""Codec weights: the ones shipped in ``ssm_apps/codecs/weights/`` and exported ``.pt`` files.

An exported file is a dict ``{"format": "ssm_apps.codec/1", "model_id", "arch": "cmamba",
"config": CMamba kwargs, "metric", "lambdas", "state_dict"}``. Floating tensors are stored in
float16 except the entropy models' (quantiles and CDF tables stay exact); ``export_weights`` first
rounds the model's weights to float16 and rebuilds the CDF tables from the rounded weights, so the
loaded model is exactly the one the tables were built for and decoding stays bit-exact.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .cmamba import CMamba

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
FORMAT = "ssm_apps.codec/1"
DEFAULT_MODEL_ID = "cmamba-small-mse"
_EXACT_PREFIXES = ("entropy_bottleneck.", "gaussian_conditional.")


def shipped_models() -> dict[str, Path]:
    """model id -> weights file of every model shipped in the package."""
    return {p.stem: p for p in sorted(WEIGHTS_DIR.glob("*.pt"))}


def _keep_exact(name: str) -> bool:
    return name.startswith(_EXACT_PREFIXES)


def export_weights(
    model: CMamba,
    path: str | Path,
    model_id: str,
    config: dict,
    metric: str = "mse",
    lambdas: list[float] | None = None,
    half: bool = True,
) -> dict:
    """Write ``model`` as an exported weights file (rounding it to float16 in place when ``half``)."""
    if half:
        with torch.no_grad():
            for name, tensor in model.state_dict().items():
                if tensor.is_floating_point() and not _keep_exact(name):
                    tensor.copy_(tensor.half().float())
    model.update(force=True, update_quantiles=True)  # quantiles fitted to the learned densities
    state = {
        k: (v.half() if half and v.is_floating_point() and not _keep_exact(k) else v).detach().cpu().clone()
        for k, v in model.state_dict().items()
    }
    payload = {
        "format": FORMAT,
        "model_id": model_id,
        "arch": "cmamba",
        "config": dict(config),
        "metric": metric,
        "lambdas": list(lambdas or []),
        "state_dict": state,
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return payload


def load_weights_file(path: str | Path, device: str | torch.device = "cpu") -> CMamba:
    """A CMamba (eval mode, float32, CDF tables ready, ``model.codec_id`` set) from an exported file
    or an ``ImageCompressionTask`` Lightning checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"codec weights file {path} does not exist")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        model = CMamba(**payload["config"])
        state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
        model.load_state_dict(state)
        model.codec_id = payload["model_id"]  # type: ignore[attr-defined]
        model.metric = payload.get("metric", "mse")  # type: ignore[attr-defined]
    elif isinstance(payload, dict) and "state_dict" in payload and "hyper_parameters" in payload:
        from .task import ImageCompressionTask

        task = ImageCompressionTask.load_from_checkpoint(path, map_location="cpu")
        model = task.model
        model.update(force=True)
        # the weights hash in the header tells checkpoints apart; the id names the architecture
        model.codec_id = f"custom-cmamba-{task.hparams.model_config}-{task.hparams.metric}"  # type: ignore[attr-defined]
        model.metric = task.hparams.metric  # type: ignore[attr-defined]
    else:
        raise ValueError(
            f"{path}: neither an exported codec weights file ({FORMAT}) nor an ImageCompressionTask checkpoint"
        )
    return model.to(device).eval()


def load_pretrained(model_id: str = DEFAULT_MODEL_ID, device: str | torch.device = "cpu") -> CMamba:
    """A shipped model by id (see ``shipped_models()``)."""
    models = shipped_models()
    if model_id not in models:
        shipped = ", ".join(models) or "none (no weights shipped in this build)"
        raise ValueError(f"no shipped codec weights named {model_id!r}; shipped: {shipped}")
    return load_weights_file(models[model_id], device)


def available_qualities(model: CMamba) -> list[int]:
    """The quality numbers a model serves (``model.qualities``)."""
    return list(model.qualities)


def reference_results(model_id: str = DEFAULT_MODEL_ID) -> dict:
    """The Kodak figures measured for a shipped model (``weights/<model_id>.json``)."""
    path = WEIGHTS_DIR / f"{model_id}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no reference results for {model_id!r} ({path} missing)")
    return json.loads(path.read_text())

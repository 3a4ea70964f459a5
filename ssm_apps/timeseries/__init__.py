"""Time-series forecasting: S-Mamba, the benchmark-CSV DataModule and the forecasting task."""
from .smamba import SMamba

__all__ = ["SMamba"]

"""Time-series forecasting: S-Mamba, the benchmark-CSV DataModule and the forecasting task."""
from .data import TimeSeriesDataModule
from .prediction_writer import ForecastWriter
from .smamba import SMamba
from .task import ForecastingTask

__all__ = ["ForecastWriter", "ForecastingTask", "SMamba", "TimeSeriesDataModule"]

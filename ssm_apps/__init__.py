"""ssm_apps: selective state space models (Mamba) for vision, audio, time series, medical imaging and codecs."""
__version__ = "0.1.0"

"""Plug-ins for other frameworks (each imports its framework only when used): ``mmseg``."""

"""Headwater: data pipelines as dependency-ordered Kubernetes Jobs, with lineage."""

__version__ = "0.1.0"

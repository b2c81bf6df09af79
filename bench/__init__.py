"""Reproducibility suite for adversarial-training papers: one shared PyTorch core.

Subpackages: ``data`` (dataset registry), ``models``, ``attacks``, ``methods`` (one
file per component, each with a registry), ``specs`` (papers as data), ``scales``
(declarative overrides), ``report`` (aggregation, verdicts, rendering).
"""

__version__ = "0.1.0"

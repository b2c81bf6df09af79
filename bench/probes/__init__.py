"""Training-time probes: analyses recorded by the training job itself (BAT Figs. 4, 6, 7),
one file per probe (term_angles, margin_gain, grad_norm). A run's config requests them
(``probes: {name: params}``); the training loop calls their hooks, the method never knows."""
from __future__ import annotations

from ..registry import Registry

PROBES: Registry = Registry("probe", "bench.probes")

"""Plotters: one file per kind of plot (a figure spec's ``plot.kind``), in a registry.

A plotter receives the plan, the aggregated cells (:class:`~bench.report.aggregate.TableResult`)
and the spec's plot options, and returns the matplotlib figure and the rows of data it plots;
:func:`bench.report.figures.draw` writes ``.png``, ``.pdf`` and that data as ``.csv``. The
registry knows the kinds by their files, so a spec's plot kind is checked at plan time
without importing matplotlib.
"""
from __future__ import annotations

from ...registry import Registry

PLOTS: Registry = Registry("plot", "bench.report.plots")

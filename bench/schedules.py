"""Per-epoch schedules of method and training-attack parameters, as data.

A recipe's ``epoch_schedules`` maps a parameter path to a schedule; the training loop
asks for the values of every scheduled parameter before each epoch and hands them to the
method (``Method.begin_epoch``), so the loop knows nothing of what they mean (FAT's τ,
DRA's ε and its clean tail). Paths are ``method.<parameter>`` (a parameter of the method)
or ``attack.<parameter>`` (a parameter of the method's training attack).

Two forms, epochs counted from 0 like the learning-rate milestones:
  {milestones: [m1, …, mk], values: [v0, v1, …, vk]}   piecewise constant: v_j in epoch e when
      exactly j milestones are ≤ e (FAT: τ = 0, 1, 2, 3 with milestones [30, 50, 70]: τ rises
      in the 31st, 51st and 71st epoch). Values may be numbers, fractions ("8/255"),
      booleans or strings.
  {ramp: [a, b], epochs: [start, end]}                 linear: a in epoch ``start``, b in epoch
      ``end − 1``, linearly between; a before ``start``, b from ``end`` on (DRA: ε from 2 to
      0.5 over the first 50 epochs is {ramp: [2, 0.5], epochs: [0, 50]}). Numbers only.
At a reduced epoch budget the epoch positions are rescaled like the lr milestones
(:func:`rescale`), so a schedule keeps its shape. Values are a pure function of the
epoch, so a resumed run gets them back exactly.
"""
from __future__ import annotations

from typing import Any

from .errors import SpecError
from .numbers import parse_number

TARGETS = ("method", "attack")


def _check(path: str, sched: Any, where: str) -> None:
    head, _, param = path.partition(".")
    if head not in TARGETS or not param or "." in param:
        raise SpecError(f"{where}: epoch_schedules key {path!r} must be method.<parameter> or attack.<parameter>")
    if not isinstance(sched, dict):
        raise SpecError(f"{where}: epoch_schedules[{path!r}] must be a mapping")
    if set(sched) == {"milestones", "values"}:
        ms, vs = sched["milestones"], sched["values"]
        if not isinstance(ms, list) or not isinstance(vs, list) or len(vs) != len(ms) + 1:
            raise SpecError(f"{where}: epoch_schedules[{path!r}] needs len(values) = len(milestones) + 1")
        if any(isinstance(m, bool) or not isinstance(m, int) or m < 0 for m in ms) or ms != sorted(ms):
            raise SpecError(f"{where}: epoch_schedules[{path!r}].milestones must be increasing epochs ≥ 0")
    elif set(sched) == {"ramp", "epochs"}:
        ramp, ep = sched["ramp"], sched["epochs"]
        if not (isinstance(ramp, list) and len(ramp) == 2 and isinstance(ep, list) and len(ep) == 2):
            raise SpecError(f"{where}: epoch_schedules[{path!r}] needs ramp: [a, b] and epochs: [start, end]")
        for v in ramp:
            parse_number(v)
        if any(isinstance(e, bool) or not isinstance(e, int) for e in ep) or not 0 <= ep[0] < ep[1]:
            raise SpecError(f"{where}: epoch_schedules[{path!r}].epochs must be integers 0 ≤ start < end")
    else:
        raise SpecError(f"{where}: epoch_schedules[{path!r}] must be {{milestones, values}} or {{ramp, epochs}}, "
                        f"got keys {sorted(sched)}")


def check(schedules: dict[str, Any] | None, where: str) -> None:
    for path, sched in (schedules or {}).items():
        _check(path, sched, where)


def rescale(schedules: dict[str, Any] | None, epochs: int, paper_epochs: int) -> dict[str, Any]:
    """The schedules at a budget of ``epochs`` instead of ``paper_epochs`` (positions ×
    epochs/paper_epochs, rounded, as the lr milestones)."""
    scale = lambda e: round(e * epochs / paper_epochs)
    out = {}
    for path, sched in (schedules or {}).items():
        if "milestones" in sched:
            out[path] = {"milestones": [scale(m) for m in sched["milestones"]], "values": list(sched["values"])}
        else:
            start, end = scale(sched["epochs"][0]), scale(sched["epochs"][1])
            out[path] = {"ramp": list(sched["ramp"]), "epochs": [start, max(end, start + 1)]}
    return out


def _scalar(v: Any) -> Any:
    """Fractions and numeric strings as floats; booleans, numbers and other strings as they are."""
    if isinstance(v, str):
        try:
            return parse_number(v)
        except SpecError:
            return v
    return v


def value(sched: dict[str, Any], epoch: int) -> Any:
    """The scheduled value in (0-indexed) ``epoch``."""
    if "milestones" in sched:
        return _scalar(sched["values"][sum(epoch >= m for m in sched["milestones"])])
    a, b = (parse_number(v) for v in sched["ramp"])
    start, end = sched["epochs"]
    if epoch <= start:
        return a
    if epoch >= end - 1:
        return b
    return a + (b - a) * (epoch - start) / (end - 1 - start)


def values(schedules: dict[str, Any] | None, epoch: int) -> dict[str, Any]:
    """``{path: value}`` of every scheduled parameter in ``epoch``."""
    return {path: value(s, epoch) for path, s in sorted((schedules or {}).items())}

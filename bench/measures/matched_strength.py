"""Matched attack strength: robust accuracy under a list of attacks, and the ε at which one
attack family matches a reference attack's accuracy (DRA: Hou et al., IJCNN 2022, §V.C: "we set
ε = 1 for DRA and ε = 2.55 for PGD, as both settings resulted in a robust accuracy of 44.5% on
vanilla-trained ResNet-50"; §V.B: "the maximal ε of DRA … is 2, which corresponds to ε = 4 − 5
in PGD attacks").

What it measures: the robust accuracy (%) of the evaluated model under each named attack, each
run over the loader with the attack protocols' generator stream (so each equals the robust
accuracy of an attack protocol with the same settings); and, with ``match``, the ε of the
``family`` attack (its step size ``step_fraction``·ε, i.e. α = ε/T for 1/T) whose robust
accuracy equals the ``reference`` attack's, found by bisection over ``bracket`` in
``iterations`` halvings (robust accuracy falls with ε; the bracket's ends are measured first,
and a reference outside their accuracies gives the nearer end).
Arguments (defaults): attacks ({label: attack config}), match (None | {reference: <label of
attacks>, family: <attack config without eps>, step_fraction (0.2), bracket ([0, "8/255"]),
iterations (10)}). Input range [0, 1].
Result: n, clean, robust {label: accuracy}, and with match: matched_eps (fraction of 1),
matched_eps_255 (×255), matched_robust (the family's accuracy there), reference_robust, and the
bisection's trace [[eps, robust], …].
"""
from __future__ import annotations

from typing import Any

from ..attacks import ATTACKS, build as build_attack
from ..errors import SpecError
from ..numbers import parse_number
from ..provenance import source_hash
from . import MEASURES
from .base import Measure

MATCH_DEFAULTS = {"step_fraction": 0.2, "bracket": [0, "8/255"], "iterations": 10}


@MEASURES.register("matched_strength")
class MatchedStrength(Measure):
    name = "matched_strength"
    defaults = {"attacks": {}, "match": None}

    @classmethod
    def validate(cls, params):
        attacks, match = params["attacks"], params["match"]
        if not attacks:
            raise SpecError("measure 'matched_strength' needs attacks: {label: attack config}")
        for label, cfg in attacks.items():
            if not isinstance(cfg, dict) or "name" not in cfg:
                raise SpecError(f"measure 'matched_strength': attack {label!r} needs a name")
            ATTACKS.get(ATTACKS.check(cfg["name"])).check_params({k: v for k, v in cfg.items() if k != "name"})
        if match is not None:
            unknown = set(match) - {"reference", "family", *MATCH_DEFAULTS}
            if unknown or match.get("reference") not in attacks or "name" not in match.get("family", {}):
                raise SpecError("measure 'matched_strength': match needs reference (a label of attacks) and family "
                                f"(an attack config), and only {sorted(MATCH_DEFAULTS)} besides; got {sorted(match)}")
            m = {**MATCH_DEFAULTS, **match}
            lo, hi = (parse_number(b) for b in m["bracket"])
            if not 0 <= lo < hi or int(m["iterations"]) < 1 or parse_number(m["step_fraction"]) <= 0:
                raise SpecError("measure 'matched_strength': bracket must be 0 ≤ lo < hi, iterations ≥ 1, "
                                "step_fraction > 0")
            fam = {k: v for k, v in m["family"].items() if k != "name"}
            ATTACKS.get(ATTACKS.check(m["family"]["name"])).check_params({**fam, "eps": hi,
                                                                          "step_size": hi * parse_number(m["step_fraction"])})

    def _robust(self, cfg: dict[str, Any], loader, seed: int) -> tuple[float, float]:
        res = build_attack({"bn_mode": "eval", **cfg}, self.model).evaluate(loader, seed=seed)
        return res["clean"], res["robust"]

    def evaluate(self, loader, seed: int = 0, progress=None) -> dict[str, Any]:
        robust, clean = {}, None
        for label, cfg in self.attacks.items():
            clean, robust[label] = self._robust(cfg, loader, seed)
        out: dict[str, Any] = {"n": loader.n, "clean": clean, "robust": robust}
        if self.match is not None:
            m = {**MATCH_DEFAULTS, **self.match}
            target = robust[m["reference"]]
            frac = parse_number(m["step_fraction"])
            at = lambda eps: self._robust({**m["family"], "eps": eps, "step_size": frac * eps}, loader, seed)[1]
            lo, hi = (parse_number(b) for b in m["bracket"])
            r_lo, r_hi = at(lo), at(hi)
            trace = [[lo, r_lo], [hi, r_hi]]
            if not r_hi <= target <= r_lo:     # outside the bracket: the nearer end
                eps, r = (lo, r_lo) if target > r_lo else (hi, r_hi)
            else:
                for _ in range(int(m["iterations"])):
                    mid = (lo + hi) / 2
                    r_mid = at(mid)
                    trace.append([mid, r_mid])
                    lo, hi = (mid, hi) if r_mid > target else (lo, mid)
                eps = (lo + hi) / 2
                r = at(eps)
                trace.append([eps, r])
            out.update(matched_eps=eps, matched_eps_255=255 * eps, matched_robust=r, reference_robust=target,
                       trace=trace)
        out["implementation"] = (f"bench.measures.matched_strength (source "
                                 f"{source_hash([MEASURES.source_file('matched_strength')])})" + "".join(
                                     f"; bench.attacks.{n} (source {source_hash([ATTACKS.source_file(n)])})"
                                     for n in sorted({c['name'] for c in self.attacks.values()}
                                                     | ({self.match['family']['name']} if self.match else set()))))
        return out

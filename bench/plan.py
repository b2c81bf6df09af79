"""Specs + scale → the run plan: every distinct training run once, every evaluation
once, and the tables that consume them.

A run is a fully resolved training config (dataset, model, method and its
hyperparameters, training attack, schedule, selection, precision, seed). Its id is
a short hash of that config and of the source files it depends on, so a change to
the core code invalidates exactly the runs it affects, and the same config asked for
by two tables (or two papers) is one run. An evaluation is (run, protocol); a
protocol's id hashes its resolved settings and the evaluation code.

Planning imports neither torch nor the components: names are checked against the
lazy registries, which know their files. Every spec is validated here, before any
job starts.
"""
from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import layout, scales, schedules, specs
from .attacks import ATTACKS
from .data.catalog import DATASETS
from .data.locate import checkpoint_requirement
from .errors import SpecError
from .measures import MEASURES
from .probes import PROBES
from .methods import METHODS
from .models import expand as expand_model
from .plan_model import (TARGET_SUFFIXES, Cell, Evaluation, Run, Table, package_version, canonical, code_version,
                         deep_merge, expand_sweeps, fill, published_cells, setting_attack, short_hash,
                         snapshot_epoch)
from .report import claims
from .report.plots import PLOTS

HISTORY_STATS = ("mean", "sum", "first", "last", "min", "max")   # bench.evaluate.history_summary

# Source files every training run depends on; the model, method and attack files are added per run.
DATA_CODE = [f"data/{f}.py" for f in ("__init__", "catalog", "locate", "store", "readers", "synthetic",
                                      "generated", "loader", "stream")]
TRAIN_CODE = ["train.py", "optim.py", "precision.py", "checkpoint.py", "evaluate.py", "registry.py",
              "numbers.py", "fileio.py", "components.py", *DATA_CODE, "models/__init__.py", "models/base.py",
              "methods/__init__.py", "methods/base.py", "attacks/__init__.py", "attacks/base.py"]
EVAL_CODE = ["evaluate.py", "checkpoint.py", "precision.py", "registry.py", "numbers.py", "fileio.py",
             *DATA_CODE, "attacks/__init__.py", "attacks/base.py"]   # the model's code is in the run id


@lru_cache(maxsize=None)
def _checked(kind: str, name: str, params_json: str) -> None:
    """Check a component's parameters against its declaration (imports the component)."""
    registry = {"method": METHODS, "attack": ATTACKS, "measure": MEASURES, "probe": PROBES}[kind]
    params = json.loads(params_json)
    try:
        registry.get(name).check_params(params)
    except SpecError as e:
        raise SpecError(f"{kind} {name!r}: {e}") from None


def check_component(kind: str, name: str, params: dict[str, Any], where: str) -> None:
    """One clear error, naming the spec location, for an unknown or ill-typed parameter of a
    method, attack, measure or probe; checked once per distinct parameter set."""
    try:
        _checked(kind, name, canonical(params))
    except SpecError as e:
        raise SpecError(f"{where}: {e}") from None


def training_attack_name(method: str, attack: dict[str, Any]) -> str | None:
    """The training attack a method runs with the recipe's attack block (None: no attack)."""
    cfg = METHODS.get(method).training_attack(attack)
    return None if cfg is None else cfg["name"]


def attack_fields(name: str) -> set[str]:
    from dataclasses import fields

    return {f.name for f in fields(ATTACKS.get(name)) if f.name != "model"}


class Plan:
    def __init__(self, scale: str, papers: list[str] | None = None, overrides: dict[str, Any] | None = None):
        self.scale_name = scale
        self.scale = scales.load(scale)
        self.overrides = overrides or {}
        self.runs: dict[str, Run] = {}
        self.evals: dict[str, Evaluation] = {}
        self.tables: dict[str, Table] = {}
        self._memo: dict[tuple, Run | None] = {}
        self._protocols: dict[tuple, tuple[str, dict[str, Any]]] = {}
        for paper in papers or specs.names():
            self._add_paper(specs.load(paper))

    # ---- resolution -------------------------------------------------------------------
    def _recipe(self, spec: dict, name: str, chain: tuple[str, ...] = ()) -> dict:
        if name not in spec["recipes"]:
            raise SpecError(f"{spec['paper']}: unknown recipe {name!r}; known: {sorted(spec['recipes'])}")
        if name in chain:
            raise SpecError(f"{spec['paper']}: recipe inheritance cycle {' → '.join(chain + (name,))}")
        recipe = dict(spec["recipes"][name])
        base = recipe.pop("base", None)
        return deep_merge(self._recipe(spec, base, chain + (name,)), recipe) if base else recipe

    def _protocol(self, spec: dict, name: str, attack: dict | None = None) -> tuple[str, dict[str, Any]]:
        """The resolved protocol ``name`` (its attack updated by ``attack``) and its id; resolved
        once per distinct (paper, name, attack) and shared, like a run (never mutated)."""
        key = (spec["paper"], name, canonical(attack or {}))
        if key not in self._protocols:
            self._protocols[key] = self._resolve_protocol(spec, name, attack)
        return self._protocols[key]

    def _resolve_protocol(self, spec: dict, name: str, attack: dict | None) -> tuple[str, dict[str, Any]]:
        if name not in spec["protocols"]:
            raise SpecError(f"{spec['paper']}: unknown protocol {name!r}; known: {sorted(spec['protocols'])}")
        proto = copy.deepcopy(spec["protocols"][name])
        sp = self.scale.get("protocols", {})
        for key in ("n_test", "batch_size"):   # the scale's n_test caps the protocol's
            if key in sp:
                proto[key] = min(sp[key], proto.get(key) or sp[key])
        proto.setdefault("checkpoint", "best")
        proto.setdefault("n_test", None)
        for name_ in proto.get("data", []):
            DATASETS.get(name_)
        if self.scale["data"]["source"] == "synthetic":
            proto.pop("data", None)   # the smoke scale stands in for these too (scale overrides)
        loc = f"bench/specs/{spec['paper']}.yaml: protocols.{name}"
        if "probe" in proto or "history" in proto:
            # records a run's training job already holds (probes.json, metrics.json): no
            # checkpoint and no test data; the id hashes the code that summarises them
            for key in ("n_test", "batch_size", "checkpoint"):
                proto.pop(key, None)
            files = ["evaluate.py", "fileio.py", "registry.py", "components.py"]
            if "probe" in proto:
                probe_name = PROBES.check(proto["probe"]["name"])
                files += ["probes/__init__.py", "probes/base.py", f"probes/{probe_name}.py"]
            else:
                for metric, m in proto["history"].get("metrics", {}).items():
                    if m.get("stat", "mean") not in HISTORY_STATS:
                        raise SpecError(f"{loc}: history metric {metric!r}: stat must be one of {HISTORY_STATS}")
            return f"{name}-{short_hash(canonical(proto), code_version(files), n=8)}", proto
        if "measure" in proto:
            measure_name = MEASURES.check(proto["measure"]["name"])
            proto["measure"] = deep_merge(proto["measure"], sp.get(measure_name, {}))
            files = ["components.py", "measures/__init__.py", "measures/base.py", f"measures/{measure_name}.py",
                     "data/corruptions.py"]
            m_attack = proto["measure"].get("attack")
            if isinstance(m_attack, dict) and "name" in m_attack:
                # a measure that names its attack (BAT's output margins) takes the setting's ε,
                # a column's overrides and the scale's settings for that attack, like an
                # attack protocol; the attack's file is part of the protocol id
                attack_name = ATTACKS.check(m_attack["name"])
                m_attack = deep_merge(m_attack, attack or {})
                proto["measure"]["attack"] = deep_merge(m_attack, sp.get(attack_name, {}))
                files.append(f"attacks/{attack_name}.py")
                check_component("attack", attack_name, {k: v for k, v in proto["measure"]["attack"].items()
                                                        if k != "name"}, f"{loc}, measure attack")
            check_component("measure", measure_name, {k: v for k, v in proto["measure"].items() if k != "name"},
                            loc)
            code = code_version(EVAL_CODE + files)
            return f"{name}-{short_hash(canonical(proto), code, n=8)}", proto
        proto["attack"] = deep_merge(proto["attack"], attack or {})
        attack_name = ATTACKS.check(proto["attack"]["name"])
        proto["attack"] = deep_merge(proto["attack"], sp.get(attack_name, {}))
        check_component("attack", attack_name, {k: v for k, v in proto["attack"].items() if k != "name"}, loc)
        code = code_version(EVAL_CODE + [f"attacks/{attack_name}.py"])
        impl = package_version("pyautoattack") if attack_name == "autoattack" else "bench"
        return f"{name}-{short_hash(canonical(proto), code, impl, n=8)}", proto

    def _evaluation(self, spec: dict, tid: str, table: dict, sid: str, seed: int, run: Run,
                    pid: str, proto: dict) -> Evaluation:
        """The evaluation of ``run``; a protocol whose ``helpers`` refer to rows is resolved
        per (setting, seed), like HAT's helper, and its id includes those runs."""
        requires, helpers = {}, {}
        for role, ref in proto.get("helpers", {}).items():
            other = self._run(spec, tid, table, sid, ref["row"], seed)
            if other is None:
                raise SpecError(f"{spec['paper']}.{tid}: protocol helper row {ref['row']!r} is skipped in {sid!r}")
            requires[role] = other.id
            helpers[role] = {"run": other.id, "checkpoint": "best"}
            if "epoch" in ref:  # a snapshot the helper run keeps (train.snapshots), rescaled like them
                epoch = snapshot_epoch(ref["epoch"], other.config)
                if epoch not in other.config.get("snapshots", []):
                    raise SpecError(f"{spec['paper']}.{tid}: row {ref['row']!r} keeps no snapshot at epoch "
                                    f"{ref['epoch']} (add it to its train.snapshots)")
                helpers[role]["checkpoint"] = f"epoch{epoch}"
        if requires:
            proto = {**proto, "helpers": helpers}
            pid = f"{pid}-{short_hash(canonical(helpers), n=6)}"
        return self.evals.setdefault(f"{run.id}/{pid}", Evaluation(run.id, pid, proto, requires))

    def _run(self, spec: dict, tid: str, table: dict, sid: str, rid: str, seed: int) -> Run | None:
        key = (spec["paper"], tid, sid, rid, seed)
        if key in self._memo:
            return self._memo[key]
        self._memo[key] = None  # guards against reference cycles
        where = f"{spec['paper']}.{tid}"
        rows = table.get("row_defs", table["rows"])
        if rid not in rows:
            raise SpecError(f"{where}: unknown row {rid!r}; known: {sorted(rows)}")
        setting, row = table["settings"][sid], rows[rid]
        over = row.get("settings", {}).get(sid, {})
        if over == "skip" or "quoted" in row:   # not run here (a quoted row shows the paper's numbers)
            return None
        if "pretrained" in row:
            run = self._pretrained_run(setting, row)
            self._memo[key] = run
            return run
        loc = f"bench/specs/{spec['paper']}.yaml: {tid}, row {rid}, setting {sid}"
        row_train = dict(row.get("train", {}))   # a row may start from another recipe ("base")
        train = copy.deepcopy(self._recipe(spec, row_train.pop("base", setting["recipe"])))   # this run's own copy
        for patch in (setting.get("train", {}), row_train, over.get("train", {})):   # setting, row, row × setting
            train = deep_merge(train, patch) if patch else train
        eps = setting_attack(setting)          # the setting's ε, if it states one
        train = deep_merge(train, {"attack": eps}) if eps else {**train, "attack": train.get("attack", {})}
        method = deep_merge(row["method"], over.get("method", {}))
        METHODS.check(method["name"])
        DATASETS.get(setting["dataset"])
        sc = self.scale

        if isinstance(train["model"], dict) and "name" not in train["model"]:
            raise SpecError(f"{loc}: the model {train['model']} has no name (a row's model patch needs a recipe "
                            f"model written as {{name: …}})")
        model = expand_model(train["model"])
        alias = train["model"] if isinstance(train["model"], str) else train["model"]["name"]
        scaled = sc.get("models", {})          # per family, then per alias (e.g. resnet50 ≠ resnet101 at mini)
        model = {**model, **scaled.get(model["name"], {}), **(scaled.get(alias, {}) if alias != model["name"] else {})}
        epochs = sc.get("epochs", train["epochs"])
        schedule = copy.deepcopy(train["schedule"])
        if "milestones" in schedule:  # rescale epoch-valued fields with the epoch budget
            schedule["milestones"] = [round(m * epochs / train["epochs"]) for m in schedule["milestones"]]
        selection = dict(train["selection"])
        sel_proto = selection.pop("protocol", None)
        # the scale's n_test caps the recipe's (e.g. BAT's "first test batch" of 128)
        caps = [n for n in (selection.get("n_test"), sc.get("selection", {}).get("n_test")) if n]
        selection["n_test"] = min(caps) if caps else None
        if selection["metric"] == "robust":
            if sel_proto is None:
                raise SpecError(f"{where}: selection by robust accuracy needs a 'protocol'")
            _, proto = self._protocol(spec, sel_proto, eps)
            selection["attack"] = deep_merge(proto["attack"], sc.get("selection", {}).get("attack", {}))
        data = self._data()
        if "classes" in train:   # a class subset of the dataset, relabelled 0…k−1 (bench.data.store.load)
            classes, k = train["classes"], DATASETS.get(setting["dataset"]).num_classes
            if len(set(classes)) != len(classes) or not all(isinstance(c, int) and 0 <= c < k for c in classes):
                raise SpecError(f"{loc}: classes must be distinct labels of {setting['dataset']} (0..{k - 1}), "
                                f"got {classes}")
            data["classes"] = list(classes)
        if "extra" in train:  # robust self-training: extra pseudo-labelled images in every batch
            info = DATASETS.get(train["extra"]["dataset"])
            if info.extends != setting["dataset"]:
                raise SpecError(f"{where}: extra data {info.name!r} is for {info.extends!r}, "
                                f"not for {setting['dataset']!r}")
            n = sc["data"].get("n_extra")
            if n is None and data["source"] == "synthetic":
                n = 10 * data["synthetic_size"][0]
            data["extra"] = {**train["extra"], "n": n}
        requires: dict[str, str] = {}
        for k, v in list(method.items()):
            if isinstance(v, dict) and set(v) == {"row"}:
                ref = self._run(spec, tid, table, sid, v["row"], seed)
                if ref is None:
                    raise SpecError(f"{where}: row {rid!r} needs row {v['row']!r} in setting {sid!r}, "
                                    f"which is skipped or circular")
                method[k] = requires[k] = ref.id
        extra = {}
        if "init" in train:  # start from another row's selected checkpoint (fine-tuning)
            ref = self._run(spec, tid, table, sid, train["init"]["row"], seed)
            if ref is None:
                raise SpecError(f"{where}: row {rid!r} starts from row {train['init']['row']!r}, which is skipped")
            extra["init"] = requires["init"] = ref.id
        if train.get("probes"):  # training-time analyses recorded by this run (bench/probes)
            extra["probes"] = {PROBES.check(n): dict(p or {}) for n, p in sorted(train["probes"].items())}
            for p in extra["probes"].values():   # a probe's `epoch` is a paper epoch: rescaled like snapshots
                if "epoch" in p:
                    p["epoch"] = max(1, round(p["epoch"] * epochs / train["epochs"]))
        if "snapshots" in train:  # keep the weights after these epochs, rescaled with the budget
            extra["snapshots"] = sorted({max(1, round(e * epochs / train["epochs"])) for e in train["snapshots"]})
        if "augment" in train:    # the recipe's training augmentation instead of the dataset's
            extra["augment"] = train["augment"]
        if train.get("epoch_schedules"):   # per-epoch method / attack parameters, rescaled like milestones
            schedules.check(train["epoch_schedules"], loc)
            extra["epoch_schedules"] = schedules.rescale(train["epoch_schedules"], epochs, train["epochs"])
        attack_name = training_attack_name(method["name"], train["attack"])
        # the scale's training-attack overrides, for the parameters this attack has
        fields_ = attack_fields(attack_name) if attack_name else None
        scale_attack = {k: v for k, v in sc.get("attack", {}).items() if fields_ is None or k in fields_}
        config = {
            "dataset": setting["dataset"], "data": data, "model": model, "method": method,
            "attack": deep_merge(train["attack"], scale_attack),
            "epochs": epochs, "paper_epochs": train["epochs"],   # epoch-valued parameters scale with epochs/paper_epochs
            "batch_size": sc.get("batch_size", train["batch_size"]),
            "optimizer": train["optimizer"], "schedule": schedule, "selection": selection,
            "precision": {"amp": self.overrides.get("amp", "none"),
                          "channels_last": bool(self.overrides.get("channels_last", False)),
                          **({"compile": self.overrides["compile"]} if "compile" in self.overrides else {})},
            "seed": seed, **extra,
        }
        self._check_run(config, attack_name, loc)
        attacks = {"pgd"} | ({attack_name} if attack_name else set()) | (
            {selection["attack"]["name"]} if "attack" in selection else set())
        code = code_version(TRAIN_CODE + [f"models/{model['name']}.py", f"methods/{method['name']}.py"]
                            + [f"attacks/{a}.py" for a in sorted(attacks)]
                            + ([f"probes/{n}.py" for n in ("__init__", "base", *extra["probes"])]
                               if "probes" in extra else []))
        tag = train["model"] if isinstance(train["model"], str) else model["name"]
        run_id = f"{setting['dataset']}-{method['name']}-{tag}-s{seed}-{short_hash(canonical(config), code)}"
        run = self.runs.setdefault(run_id, Run(run_id, config, requires))
        self._memo[key] = run
        return run

    @staticmethod
    def _check_run(config: dict[str, Any], attack_name: str | None, loc: str) -> None:
        """Every component parameter of a run, checked against its declaration: the method's
        (and the values its epoch schedules give it), the training attack's, the selection
        attack's and the probes'."""
        method = {k: v for k, v in config["method"].items() if k != "name"}
        check_component("method", config["method"]["name"], method, f"{loc}, method")
        attack = METHODS.get(config["method"]["name"]).training_attack(config["attack"])
        if attack is not None:
            check_component("attack", attack_name, {k: v for k, v in attack.items() if k != "name"},
                            f"{loc}, training attack")
        for path, sched in config.get("epoch_schedules", {}).items():
            target, _, param = path.partition(".")
            if target == "attack" and attack is None:
                raise SpecError(f"{loc}: epoch_schedules[{path!r}]: the method has no training attack")
            values = sched.get("values", sched.get("ramp"))
            for value in values:
                if target == "method":
                    check_component("method", config["method"]["name"], {**method, param: value},
                                    f"{loc}, epoch_schedules[{path!r}]")
                else:
                    check_component("attack", attack_name, {**{k: v for k, v in attack.items() if k != "name"},
                                                            param: value}, f"{loc}, epoch_schedules[{path!r}]")
        sel = config["selection"].get("attack")
        if sel:
            check_component("attack", sel["name"], {k: v for k, v in sel.items() if k != "name"},
                            f"{loc}, selection attack")
        for name, params in config.get("probes", {}).items():
            check_component("probe", name, params, f"{loc}, probe")

    def _data(self) -> dict[str, Any]:
        """The data block of a run config: the scale's source and training subset."""
        sc = self.scale["data"]
        data = {"source": sc["source"], "n_train": sc.get("n_train")}
        if data["source"] == "synthetic":
            data["synthetic_size"] = sc.get("synthetic_size", [512, 256])
        return data

    def _pretrained_run(self, setting: dict, row: dict) -> Run:
        """A model evaluated without training (bench/pretrained.py): one run for every seed,
        its weights from RobustBench or a file, or random at a scale that says so (smoke)."""
        src = {**row["pretrained"], **self.scale.get("pretrained", {})}
        if "robustbench" in src:
            src = {"dataset": setting["dataset"], "threat_model": "Linf", **src}
            model = {"name": "robustbench", "id": src["robustbench"], "dataset": src["dataset"],
                     "threat_model": src["threat_model"]}
            tag, versions = src["robustbench"], [package_version("robustbench")]
        else:
            model, tag, versions = expand_model(src.pop("model")), Path(src["file"]).stem, []
        DATASETS.get(setting["dataset"])
        config = {"dataset": setting["dataset"], "data": {**self._data(), "n_train": None}, "model": model,
                  "pretrained": src, "epochs": 0, "seed": 0}
        code = code_version(["pretrained.py", "checkpoint.py", "fileio.py", *DATA_CODE, "models/__init__.py",
                             "models/base.py", f"models/{model['name']}.py"])
        run_id = f"{setting['dataset']}-pretrained-{tag}-{short_hash(canonical(config), code, *versions)}"
        return self.runs.setdefault(run_id, Run(run_id, config, {}))

    def inputs(self, run: Run) -> list[str]:
        """What a run reads from the data root besides its dataset (real data only): extra
        training data and imported weights, its own and those of the runs it needs."""
        if self.scale["data"]["source"] != "real":
            return []
        cfg = run.config
        out = [cfg["data"]["extra"]["dataset"]] if cfg["data"].get("extra") else []
        if "pretrained" in cfg:
            out.append(checkpoint_requirement(cfg["pretrained"]))
        for other in run.requires.values():
            out += self.inputs(self.runs[other])
        return sorted(set(out))

    def _add_paper(self, spec: dict) -> None:
        ids = {*spec.get("tables", {}), *spec.get("figures", {})}
        for choice in spec.get("choices", []):
            unknown = sorted(set(choice.get("targets", [])) - ids)
            if unknown:
                raise SpecError(f"{spec['paper']}: choice {choice['topic']!r} names unknown tables/figures {unknown} "
                                f"(known: {', '.join(sorted(ids))})")
        for kind, section in (("table", "tables"), ("figure", "figures")):
            for tid, target in spec.get(section, {}).items():
                self._add_target(spec, kind, tid, self._expand(spec, tid, target))

    @staticmethod
    def _expand(spec: dict, tid: str, table: dict) -> dict:
        """Resolve ``like`` (settings and rows of another table) and ``rows_only``."""
        table = dict(table)
        if "like" in table:
            other = {**spec["tables"], **spec.get("figures", {})}.get(table["like"])
            if other is None:
                raise SpecError(f"{spec['paper']}.{tid}: 'like' names unknown table {table['like']!r}")
            table = {"settings": other["settings"], "rows": other["rows"], **table}
        for key in ("settings", "rows"):
            if key not in table:
                raise SpecError(f"{spec['paper']}.{tid}: needs '{key}' (or 'like')")
        table["rows"] = expand_sweeps(table["rows"], f"{spec['paper']}.{tid}")
        if "rows_only" in table:
            groups = {r.get("group", rid) for rid, r in table["rows"].items()}
            unknown = set(table["rows_only"]) - set(table["rows"]) - groups
            if unknown:
                raise SpecError(f"{spec['paper']}.{tid}: rows_only names unknown rows {sorted(unknown)}")
            table["row_defs"] = table["rows"]   # every row stays referable (HAT's helper)
            table["rows"] = {rid: r for rid, r in table["rows"].items()
                             if rid in table["rows_only"] or r.get("group") in table["rows_only"]}
        return table

    def _add_target(self, spec: dict, kind: str, tid: str, table: dict) -> None:
        paper = spec["paper"]
        where = f"{paper}.{tid}"
        stem = layout.target_stem(kind, self.scale_name, paper, tid)
        target = Table(paper, tid, stem, table, spec, kind, self.scale.get("seeds"))
        columns = table["columns"]
        if kind == "figure":
            if "plot" not in table:
                raise SpecError(f"{where}: a figure needs a 'plot' (its kind: {', '.join(PLOTS.names())})")
            PLOTS.check(table["plot"]["kind"])
        published = {(s, r, c): (v, sd) for t, s, r, c, v, sd in published_cells(spec) if t == tid}
        # with ``match``, a sweep stands for its one member that matches a reference row
        groups = {r["group"] for r in table["rows"].values() if "group" in r} if "match" in table else set()
        if "match" in table and (table["match"]["by"] not in columns or (
                table["match"].get("rule", "closest") == "closest" and table["match"].get("to") not in table["rows"])):
            raise SpecError(f"{where}: match needs a column 'by' of this table and, for rule 'closest', a row 'to'")
        for sid, rows in table.get("published", {}).items():
            for rid, values in rows.items():
                if sid not in table["settings"] or (rid not in table["rows"] and rid not in groups):
                    raise SpecError(f"{where}: published numbers for unknown setting/row {sid}/{rid}")
                if len(values) != len(columns):
                    raise SpecError(f"{where}: published[{sid}][{rid}] has {len(values)} values "
                                    f"for {len(columns)} columns")
        # a column's protocol (and metric) may name the setting's vars ("{severity}"); a column
        # with `settings` is evaluated in those settings only
        protocols = {(sid, cid): self._protocol(spec, fill(col["protocol"], setting, where),
                                                deep_merge(setting_attack(setting), col.get("attack") or {}))
                     for sid, setting in table["settings"].items()
                     for cid, col in columns.items() if "protocol" in col and sid in col.get("settings", [sid])}
        skipped = {key: why for key, (_, proto) in protocols.items() if (why := self._skipped(proto))}
        for (_, cid), (_, proto) in protocols.items():
            if "probe" in proto:
                for sid, rid in ((s, r) for s in table["settings"] for r in table["rows"]):
                    for seed in target.setting_seeds(sid):
                        run = self._run(spec, tid, table, sid, rid, seed)
                        if run is not None and proto["probe"]["name"] not in run.config.get("probes", {}):
                            raise SpecError(f"{where}: column {cid!r} reads probe {proto['probe']['name']!r}, "
                                            f"which row {rid!r} in setting {sid!r} does not record "
                                            f"(add it to the recipe's probes)")
            if "attack" in proto:
                gives = ATTACKS.get(proto["attack"]["name"]).metrics
                if columns[cid]["metric"].split(".")[0] not in gives:
                    raise SpecError(f"{where}: column {cid!r} reads metric {columns[cid]['metric']!r} of an attack "
                                    f"protocol; attack {proto['attack']['name']!r} gives {', '.join(gives)}")
        for sid, setting in table["settings"].items():
            seeds = target.setting_seeds(sid)
            for rid in table["rows"]:
                runs = [self._run(spec, tid, table, sid, rid, seed) for seed in seeds]
                run_ids = list(dict.fromkeys(r.id for r in runs if r is not None))   # a pretrained row: one run
                inputs = sorted({d for r in runs if r is not None for d in self.inputs(r)})
                for cid, col in columns.items():
                    keys = []
                    if (sid, cid) in protocols and (sid, cid) not in skipped:
                        pid, proto = protocols[(sid, cid)]
                        keys = list(dict.fromkeys(self._evaluation(spec, tid, table, sid, seed, run, pid, proto).key
                                                  for seed, run in zip(seeds, runs) if run is not None))
                    value, std = published.get((sid, rid, cid), (None, None))
                    data = protocols[(sid, cid)][1].get("data", []) if (sid, cid) in protocols else []
                    data = sorted({*data, *inputs})
                    quoted = table["rows"][rid].get("quoted", {}).get("source")
                    metric = col.get("metric", "declared" if "declared" in col else "param")
                    target.cells.append(Cell(sid, rid, cid, setting["dataset"],
                                             fill(metric, setting, where),
                                             [] if quoted else keys, value, std, run_ids, col.get("param"),
                                             data, quoted, col.get("declared"), skipped.get((sid, cid))))
        for claim in table.get("claims", []):
            _, refs = claims.parse(claim["check"])
            for r, s, c in refs:
                cell = next((x for x in target.cells if (x.row == r or table["rows"][x.row].get("group") == r
                                                         and r in groups) and (x.setting, x.column) == (s, c)), None)
                if cell is None or not (cell.runs or cell.quoted and cell.published is not None):
                    raise SpecError(f"{where}: claim {claim['id']!r} refers to {r}.{s}.{c}, which is neither a "
                                    f"cell that runs nor a quoted cell with a published number (row.setting.column)")
        self.tables[stem] = target

    def _skipped(self, proto: dict[str, Any]) -> str | None:
        """Why this scale does not run a protocol (its ``protocols.skip`` names the attack or
        measure, or the attack has more than ``protocols.max_steps`` iterations), or None."""
        sp = self.scale.get("protocols", {})
        name = (proto.get("attack") or proto.get("measure") or proto.get("probe") or {}).get("name")
        if name in sp.get("skip", []):
            return f"{name} is not run at the {self.scale_name} scale (cost)"
        steps = (proto.get("attack") or {}).get("steps")
        if isinstance(steps, int) and steps > sp.get("max_steps", steps):
            return f"{steps}-step attacks are not run at the {self.scale_name} scale (cost)"
        return None

    # ---- queries ----------------------------------------------------------------------
    def targets(self) -> list[str]:
        return sorted(t.target for t in self.tables.values())

    def table(self, stem: str) -> Table:
        stem = str(Path(stem).with_suffix("")) if Path(stem).suffix in TARGET_SUFFIXES else stem
        if stem not in self.tables:
            raise SpecError(f"no target {stem!r} at scale {self.scale_name!r}; see `bench targets`")
        return self.tables[stem]

    def run(self, run_id: str) -> Run:
        if run_id not in self.runs:
            raise SpecError(f"run {run_id!r} is not in the {self.scale_name} plan (did the spec or code change?)")
        return self.runs[run_id]

    def evaluation(self, run_id: str, protocol_id: str) -> Evaluation:
        key = f"{run_id}/{protocol_id}"
        if key not in self.evals:
            raise SpecError(f"evaluation {key!r} is not in the {self.scale_name} plan")
        return self.evals[key]

    def resources(self, kind: str, run_id: str | None = None) -> dict[str, int]:
        res = dict(self.scale["resources"].get(kind, {}))
        per_epoch = res.pop("runtime_per_epoch", None)
        if per_epoch is not None and run_id is not None:
            res["runtime"] = int(per_epoch * self.run(run_id).config["epochs"]) + 10
        return res


def all_targets() -> list[str]:
    return sorted(t for s in scales.names() for t in Plan(s).targets())

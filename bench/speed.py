"""``bench speed``: training and evaluation throughput on whatever device this is.

For each method × model it times the suite's own training step (``Method.train_step``
through the loop's :class:`~bench.train.Updater`) on a fixed batch already on the device,
eager and compiled, and — for the methods that have one here — a plain reference-style loop
written the way the papers' public code writes it (its own PGD, its own loss, the same model
and batch, in the same process), reporting images/s and the ratios suite/reference and
compiled/eager. Then PGD-20 and AutoAttack evaluation throughput. It is a benchmark, not a
test: warm-up steps first, then the median of several timed repeats; the result is printed
as a table and written to ``results/speed/<device>.json``, which ``bench plan --cost`` reads.

Full mode (a GPU): ResNet-18 and WRN-34-10 at batch 128, PGD-10 training attacks, every
method; about ten minutes on one GPU. ``--quick`` (a CPU): the smoke-size networks at
batch 32 with 3-step attacks, in minutes; ``--quick mini``: the mini scale's networks (ResNet-18
at width 16, WRN-10-2), same batch and attacks.
"""
from __future__ import annotations

import contextlib
import json
import platform
import statistics
import time
from dataclasses import fields
from typing import Any, Callable

import torch
import torch.nn.functional as F

from . import layout, precision
from .attacks import ATTACKS
from .methods import METHODS
from .models import ALIASES, build

FULL = {"models": {"resnet18": "resnet18", "wrn34_10": "wrn34_10"}, "batch": 128, "steps": 10, "repeats": 5,
        "warmup": 3}
QUICK = {"models": {"resnet18 (smoke size)": {"name": "resnet", "blocks": [1, 1, 1, 1], "width": 8},
                    "wrn (smoke size)": {"name": "wide_resnet", "depth": 10, "widen": 1}},
         "batch": 32, "steps": 3, "repeats": 5, "warmup": 3}
QUICK_MINI = {**QUICK, "models": {"resnet18 (mini size)": {"name": "resnet", "blocks": [1, 1, 1, 1], "width": 16},
                                  "wrn (mini size)": {"name": "wide_resnet", "depth": 10, "widen": 2}}}
SIZES = {"full": FULL, "smoke": QUICK, "mini": QUICK_MINI}   # bench/scales: the smoke and mini models
EPS, ALPHA = 8 / 255, 2 / 255


# ---- reference-style loops (as the papers' public code writes them) ---------------------------

def _pgd(model, x, y, steps, loss_fn, start):
    model.eval()
    x_adv = start(x).detach()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        grad, = torch.autograd.grad(loss_fn(model(x_adv), y), x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + ALPHA * grad.sign(), x - EPS), x + EPS).clamp(0, 1)
    model.train()
    return x_adv.detach()


def _uniform(x):
    return (x + torch.empty_like(x).uniform_(-EPS, EPS)).clamp(0, 1)


def _normal(x):
    return x + 0.001 * torch.randn_like(x)


def _kl_to(p_nat):
    return lambda logits, _: F.kl_div(F.log_softmax(logits, 1), p_nat, reduction="sum")


def reference_losses(steps: int) -> dict[str, Callable]:
    """name → loss(model, x, y, helper) as the official code computes it (attack included)."""
    def standard(m, x, y, h):
        return F.cross_entropy(m(x), y)

    def pgd_at(m, x, y, h):
        return F.cross_entropy(m(_pgd(m, x, y, steps, lambda z, t: F.cross_entropy(z, t), _uniform)), y)

    def trades(m, x, y, h, beta=6.0):   # the official code forwards x twice in train mode
        m.eval()
        with torch.no_grad():
            p = F.softmax(m(x), 1)
        x_adv = _pgd(m, x, y, steps, _kl_to(p), _normal)
        logits_adv = m(x_adv)
        return F.cross_entropy(m(x), y) + beta * F.kl_div(F.log_softmax(logits_adv, 1), F.softmax(m(x), 1),
                                                          reduction="batchmean")

    def mart(m, x, y, h, beta=6.0):
        x_adv = _pgd(m, x, y, steps, lambda z, t: F.cross_entropy(z, t), _normal)
        logits, logits_adv = m(x), m(x_adv)
        p_adv = F.softmax(logits_adv, 1)
        top2 = p_adv.argsort(1)[:, -2:]
        wrong = torch.where(top2[:, -1] == y, top2[:, -2], top2[:, -1])
        bce = F.cross_entropy(logits_adv, y) + F.nll_loss(torch.log(1.0001 - p_adv + 1e-12), wrong)
        p_nat = F.softmax(logits, 1)
        kl = F.kl_div(torch.log(p_adv + 1e-12), p_nat, reduction="none").sum(1)
        return bce + beta * (kl * (1.0000001 - p_nat.gather(1, y[:, None]).squeeze(1))).mean()

    def hat(m, x, y, h, beta=2.5, gamma=0.5):
        m.eval()
        with torch.no_grad():
            p = F.softmax(m(x), 1)
        x_adv = _pgd(m, x, y, steps, _kl_to(p), _normal)
        x_hr = x + 2.0 * (x_adv - x)
        with torch.no_grad():
            y_hr = h(x_adv).argmax(1)
        logits, logits_adv, logits_hr = m(x), m(x_adv), m(x_hr)
        return (F.cross_entropy(logits, y) + beta * F.kl_div(F.log_softmax(logits_adv, 1), F.softmax(logits, 1),
                                                             reduction="batchmean")
                + gamma * F.cross_entropy(logits_hr, y_hr))

    def bat(m, x, y, h, beta=5.0, bridges=2):
        logits = m(x)
        x_adv = _pgd(m, x, y, steps, lambda z, t: F.cross_entropy(z, t), _uniform)
        delta = x_adv - x
        chain = [logits] + [m(x + delta * k / bridges) for k in range(1, bridges + 1)]
        kl = sum(F.kl_div(F.log_softmax(b, 1), F.softmax(a, 1), reduction="batchmean")
                 for a, b in zip(chain[:-1], chain[1:]))
        return F.cross_entropy(logits, y) + beta * kl

    return {"standard": standard, "pgd_at": pgd_at, "trades": trades, "mart": mart, "hat": hat, "bat": bat}


# ---- timing ---------------------------------------------------------------------------------

def _timed(step: Callable[[], Any], dev: torch.device, warmup: int, repeats: int) -> float:
    """Median seconds of one call after warm-up."""
    for _ in range(warmup):
        step()
    precision.sync(dev)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        precision.sync(dev)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _suite_step(name: str, model, helper, steps: int, amp: str, dev: torch.device):
    from .optim import build_optimizer
    from .train import Updater

    cls = METHODS.get(name)
    attack_cfg = cls.training_attack({} if cls.attack_defaults is not None else None)
    if attack_cfg is not None and "steps" in {f.name for f in fields(ATTACKS.get(attack_cfg["name"]))}:
        attack_cfg["steps"] = steps   # the benchmark's attack steps, where the attack has steps (not FGSM-RS)
    if attack_cfg is not None and "step_size" in attack_cfg:
        attack_cfg.setdefault("step_size", "2/255")
    helpers = {h: helper for h in cls.helpers_required}
    method = cls(model, None if attack_cfg is None else {k: v for k, v in attack_cfg.items() if k != "name"},
                 helpers=helpers)
    method.autocast = lambda: precision.autocast(dev, amp)
    opt = build_optimizer(model.parameters(), {"name": "sgd", "lr": 0.01, "momentum": 0.9})   # the suite's
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    update = Updater(opt, sched, {}, method.autocast, 10 ** 9)
    g = torch.Generator(device=dev).manual_seed(0)
    return lambda x, y: method.train_step(x, y, g, update)


def run(size: str = "full", methods: list[str] | None = None, compile_modes: tuple[str, ...] = ("none", "auto"),
        amp: str = "none", progress: bool = True) -> dict[str, Any]:
    """``size``: "full" (a GPU), "smoke" or "mini" (a CPU, ``--quick``)."""
    cfg, quick = SIZES[size], size != "full"
    dev = precision.device()
    b = cfg["batch"]
    refs = reference_losses(cfg["steps"])
    names = methods or [m for m in METHODS.names() if not m.startswith("_")]
    rows = []
    say = (lambda *a: print(*a, flush=True)) if progress else (lambda *a: None)
    for label, spec in cfg["models"].items():
        spec = ALIASES.get(spec, spec) if isinstance(spec, str) else spec
        x = torch.rand(b, 3, 32, 32, device=dev)
        y = torch.randint(0, 10, (b,), device=dev)
        for name in names:
            row: dict[str, Any] = {"model": label, "model_spec": spec, "method": name, "batch": b,
                                   "attack_steps": cfg["steps"], "amp": amp}
            for mode in compile_modes:
                torch.manual_seed(0)
                model = build(spec, 10, 3).to(dev).train()
                helper = build(spec, 10, 3).to(dev).eval()
                fmodel = precision.compiled(model, mode, dev)
                try:
                    step = _suite_step(name, fmodel, helper, cfg["steps"], amp, dev)
                    row[f"suite_{mode}"] = b / _timed(lambda: step(x, y), dev, cfg["warmup"], cfg["repeats"])
                except Exception as e:   # a method this generic harness cannot drive (needs special data)
                    row[f"suite_{mode}"] = None
                    row["note"] = f"{type(e).__name__}: {str(e)[:80]}"
            if name in refs:
                torch.manual_seed(0)
                model = build(spec, 10, 3).to(dev).train()
                helper = build(spec, 10, 3).to(dev).eval()
                opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
                ctx = (lambda: precision.autocast(dev, amp))

                def ref_step():
                    with ctx():
                        loss = refs[name](model, x, y, helper)
                    opt.zero_grad()
                    loss.float().backward()
                    opt.step()

                row["reference"] = b / _timed(ref_step, dev, cfg["warmup"], cfg["repeats"])
            eager, ref = row.get("suite_none"), row.get("reference")
            row["suite_vs_reference"] = eager / ref if eager and ref else None
            comp = row.get("suite_auto")
            row["compiled_vs_eager"] = comp / eager if comp and eager else None
            rows.append(row)
            say(_fmt_row(row))
        rows += _eval_rows(label, spec, x, y, dev, cfg, quick, say)
    out = {"device": _device_name(dev), "torch": torch.__version__, "python": platform.python_version(),
           "quick": quick, "size": size, "amp": amp, "rows": rows, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    path = layout.results_root() / "speed" / f"{_slug(out['device'])}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    out["path"] = str(path)
    return out


def _eval_rows(label, spec, x, y, dev, cfg, quick, say) -> list[dict[str, Any]]:
    from .attacks import build as build_attack
    from .data.loader import DeviceLoader
    from .data.store import Split

    model = build(spec, 10, 3).to(dev).eval()
    rows = []
    pgd = build_attack({"name": "pgd", "steps": 20, "eps": "8/255", "step_size": "2/255"}, model)
    g = torch.Generator(device=dev).manual_seed(0)
    sec = _timed(lambda: pgd(x, y, g), dev, 1, cfg["repeats"])
    rows.append({"model": label, "method": "eval: PGD-20", "batch": len(y), "suite_none": len(y) / sec})
    aa_cfg = {"name": "autoattack", "eps": "8/255", **({"attacks": ["apgd-ce"], "n_iter": 5} if quick else {})}
    aa = build_attack(aa_cfg, model)
    loader = DeviceLoader(Split((x * 255).to(torch.uint8).cpu(), y.cpu()), len(y), dev)
    with contextlib.redirect_stdout(None):
        sec = _timed(lambda: aa.evaluate(loader), dev, 0, 1)
    rows.append({"model": label, "method": "eval: AutoAttack" + (" (APGD-CE, 5 iterations)" if quick else " (standard)"),
                 "batch": len(y), "suite_none": len(y) / sec})
    for r in rows:
        say(_fmt_row(r))
    return rows


def _device_name(dev: torch.device) -> str:
    from .provenance import device_label

    label = device_label(str(dev))
    return label if dev.type == "cuda" else f"{label} ({torch.get_num_threads()} threads)"


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in s).strip("_").lower()


def _num(v) -> str:
    return "–" if v is None else f"{v:8.1f}"


def _ratio(v) -> str:
    return "–" if v is None else f"{v:5.2f}×"


def _fmt_row(r: dict[str, Any]) -> str:
    return (f"{r['model']:<24} {r['method']:<40} eager {_num(r.get('suite_none'))}  compiled {_num(r.get('suite_auto'))}"
            f"  reference {_num(r.get('reference'))}  suite/ref {_ratio(r.get('suite_vs_reference'))}"
            f"  compiled/eager {_ratio(r.get('compiled_vs_eager'))}  images/s" + (f"  ({r['note']})" if r.get("note") else ""))

"""Claims: relations a paper states, written as small expressions over table cells.

``hat.cifar10.clean - trades.cifar10.clean >= 1.0`` refers to cells as
``<row>.<setting>.<column>``. Allowed: numbers, cell references, + − * /, unary −,
comparisons (chained too), and/or/not, and the functions abs, min, max. Anything
else is rejected when the spec is validated, before any job runs.
"""
from __future__ import annotations

import ast
import math
import operator
from typing import Callable, Mapping

from ..errors import SpecError

Ref = tuple[str, str, str]

_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_CMP = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
        ast.Eq: operator.eq, ast.NotEq: operator.ne}
_FUN: dict[str, Callable] = {"abs": abs, "min": min, "max": max}


def _ref(node: ast.AST) -> Ref | None:
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
            and isinstance(node.value.value, ast.Name)):
        return node.value.value.id, node.value.attr, node.attr
    return None


def parse(expr: str) -> tuple[ast.Expression, list[Ref]]:
    """Parse and check an expression; return its tree and the cells it refers to."""
    try:
        tree = ast.parse(" ".join(expr.split()), mode="eval")
    except SyntaxError as e:
        raise SpecError(f"claim {expr!r}: not a valid expression ({e.msg})") from None
    refs: list[Ref] = []

    def check(node: ast.AST) -> None:
        ref = _ref(node)
        if ref is not None:
            refs.append(ref)
            return
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return
        if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
            check(node.left), check(node.right)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not)):
            check(node.operand)
        elif isinstance(node, ast.Compare) and all(type(op) in _CMP for op in node.ops):
            check(node.left)
            for c in node.comparators:
                check(c)
        elif isinstance(node, ast.BoolOp):
            for v in node.values:
                check(v)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUN
              and not node.keywords and node.args):
            for a in node.args:
                check(a)
        else:
            raise SpecError(f"claim {expr!r}: unsupported element {ast.dump(node)[:60]}")

    check(tree.body)
    return tree, refs


class Missing(Exception):
    """A referenced cell has no usable value, or the arithmetic is undefined: the reason."""


NOT_RUN = "not run"


def check(expr: str, values: Mapping[Ref, float | None]) -> tuple[bool | None, str]:
    """The verdict (True/False), or None with the reason: "not run" when a referenced cell
    has no value, "not run (…)" when a cell is NaN/inf or the arithmetic is undefined
    (division by zero, overflow). Never raises on the numbers."""
    tree, _ = parse(expr)

    def finite(v, what: str):
        if isinstance(v, float) and not math.isfinite(v):
            raise Missing(f"{NOT_RUN} ({v} in {what})")
        return v

    def ev(node: ast.AST):
        ref = _ref(node)
        if ref is not None:
            v = values.get(ref)
            if v is None:
                raise Missing(NOT_RUN)
            return finite(v, ".".join(ref))
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.BinOp):
            try:
                return finite(_BIN[type(node.op)](ev(node.left), ev(node.right)), ast.unparse(node))
            except (ZeroDivisionError, OverflowError) as e:
                raise Missing(f"{NOT_RUN} ({e} in {ast.unparse(node)})") from None
        if isinstance(node, ast.UnaryOp):
            return -ev(node.operand) if isinstance(node.op, ast.USub) else not ev(node.operand)
        if isinstance(node, ast.Compare):
            left = ev(node.left)
            for op, c in zip(node.ops, node.comparators):
                right = ev(c)
                if not _CMP[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.BoolOp):
            vals = [bool(ev(v)) for v in node.values]
            return all(vals) if isinstance(node.op, ast.And) else any(vals)
        if isinstance(node, ast.Call):
            return _FUN[node.func.id](*(ev(a) for a in node.args))
        raise AssertionError(node)

    try:
        return bool(ev(tree.body)), ""
    except Missing as e:
        return None, str(e)


def evaluate(expr: str, values: Mapping[Ref, float | None]) -> bool | None:
    """True/False, or None when a referenced cell has no value (not run) or the check is
    undefined on these numbers (:func:`check` gives the reason)."""
    return check(expr, values)[0]

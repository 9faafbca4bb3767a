"""``pre_dispatch`` expressions such as ``'2 * n_jobs'``, read without ``eval``.

The expression is parsed with :mod:`ast` and only numbers, ``n_jobs`` and
arithmetic are accepted; anything else (names, calls, attributes, subscripts,
comprehensions...) is refused, so a parameter can never run code (the flaw joblib
fixed in 1.2, CVE-2022-21797).
"""

from __future__ import annotations

import ast
import operator
from typing import Any, Callable

__all__ = ["pre_dispatch_amount"]

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
#: As joblib: longer expressions are refused (ast.parse can crash on huge input),
#: and so are values beyond a million (``9**9**9`` would take for ever).
_MAX_LENGTH = 30
_MAX_VALUE = 10**6


class _Refused(Exception):
    pass


def _value(node: ast.AST, n_jobs: int) -> float:
    value: float
    # Numbers only: ``type(...) in`` keeps bool out (an int to ``isinstance``).
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        if type(node.value) not in (int, float):
            raise _Refused
        value = node.value
    elif isinstance(node, ast.Name) and node.id == "n_jobs":
        value = n_jobs
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _value(node.left, n_jobs), _value(node.right, n_jobs)
        if isinstance(node.op, ast.Pow) and abs(right) > 64:
            raise _Refused
        value = _BINARY[type(node.op)](left, right)
    elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        value = _UNARY[type(node.op)](_value(node.operand, n_jobs))
    else:
        raise _Refused
    if isinstance(value, complex) or abs(value) > _MAX_VALUE:
        raise _Refused
    return value


def pre_dispatch_amount(expression: str, n_jobs: int) -> int:
    """The number ``expression`` (e.g. ``'2*n_jobs'``) stands for.

    Parameters
    ----------
    expression : str
        Numbers, ``n_jobs``, ``+ - * / // % **`` and parentheses.
    n_jobs : int
        The call's effective number of workers.

    Returns
    -------
    int
        The value, truncated to an int.

    Raises
    ------
    ValueError
        Anything else, naming the expression.
    """
    if len(expression) > _MAX_LENGTH:
        raise ValueError(
            f"pre_dispatch={expression[:_MAX_LENGTH]!r}... is too long: at most "
            f"{_MAX_LENGTH} characters of arithmetic on n_jobs are accepted"
        )
    try:
        return int(_value(ast.parse(expression.strip(), mode="eval").body, n_jobs))
    except (_Refused, SyntaxError, ZeroDivisionError, OverflowError, ValueError):
        raise ValueError(
            f"pre_dispatch={expression!r} is not a valid expression: use an int, 'all' "
            "or arithmetic on n_jobs such as '2*n_jobs'"
        ) from None

"""Safe rule expressions: a restricted subset of Python syntax compiled to closures.

The text is parsed with :mod:`ast` (parsing runs no code), every node is checked against a whitelist and
type-checked, and the tree is turned into nested closures over a flat ``env`` dict of signal values. Nothing
is ever handed to ``eval``/``exec``, names resolve only to signals the resolver knows, there is no attribute
access, subscription, comprehension, lambda or keyword argument, and the tree size is capped, so an
expression's cost is bounded by its length.

Why our own compiler rather than CEL (measured in ``tests/bench/bench_rules.py``): the CEL bindings convert
the whole context on each call, and our functions with literal arguments (``sma(50, "1d")``) are resolved at
load time into indicator registrations, which is where the type and name errors with positions come from.

Grammar: numbers, ``true``/``false`` (or ``True``/``False``), signal names, ``+ - * / %``, unary ``-``,
comparisons (chainable), ``and``/``or``/``not``, ``x if cond else y`` and calls of known functions.
Types are ``number`` and ``bool``; strings exist only as literal arguments of indicator functions.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from hedgewatch.service.errors import HedgewatchError

NUM = "number"
BOOL = "bool"
STR = "string"

MAX_LENGTH = 4096
MAX_NODES = 256

Fn = Callable[[dict[str, Any]], Any]


class ExprError(HedgewatchError):
    """A problem in an expression, at a 1-based ``line`` and ``column`` of the expression text."""

    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        self.message = message
        self.line = line
        self.column = column
        super().__init__(f"{line}:{column}: {message}")


class Resolver(Protocol):
    """What the compiler asks about names: the signal catalog and the indicator registry behind it."""

    def name(self, name: str) -> tuple[str, str] | None:
        """``(env key, type)`` of a plain signal, or None when unknown."""

    def call(self, name: str, args: tuple[Any, ...]) -> tuple[str, str] | None:
        """``(env key, type)`` of an indicator function applied to literal ``args``; None when ``name`` is
        not an indicator function. Raises ValueError with a message when the arguments are wrong."""

    def suggest(self, name: str) -> str:
        """A hint for an unknown name (may be empty)."""

    def is_function(self, name: str) -> bool:
        """Whether ``name`` is an indicator function."""


@dataclass
class Compiled:
    """A compiled expression. ``fn(env)`` evaluates it; ``keys`` are the env keys it reads (all must be
    non-None for it to evaluate); ``value_fn`` gives the rule's ``$value`` (left side of the first
    comparison); ``memory`` holds crossing state between evaluations (persisted with the rule)."""

    source: str
    fn: Fn
    type: str
    keys: tuple[str, ...]
    value_fn: Fn | None
    memory: list[float | None] = field(default_factory=list)


_CMP: dict[type, Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
}
_ARITH: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.Mod: operator.mod,
}
_SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Mod: "%", ast.Pow: "**",
           ast.FloorDiv: "//", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<",
           ast.RShift: ">>", ast.MatMult: "@"}
_PURE: dict[str, tuple[int, int, Callable[..., float]]] = {
    # name: (min args, max args, implementation); all arguments and results are numbers
    "abs": (1, 1, abs),
    "min": (2, 16, min),
    "max": (2, 16, max),
}
_CONSTANTS = {"true": True, "false": False}


def _pos(node: ast.AST) -> tuple[int, int]:
    return getattr(node, "lineno", 1), getattr(node, "col_offset", 0) + 1


def _err(node: ast.AST, message: str) -> ExprError:
    return ExprError(message, *_pos(node))


def _number(node: ast.AST, v: int | float) -> float:
    """A numeric literal as a float; one that a float cannot hold (``1e400``, a 400-digit integer) is an
    error at its position, not an OverflowError or an infinity."""
    try:
        f = float(v)
    except OverflowError:
        f = math.inf
    if not math.isfinite(f):
        raise _err(node, "a number out of range (the largest is about 1.8e308)")
    return f


def _describe(node: ast.AST) -> str:
    try:
        return ast.unparse(node)
    except Exception:
        return type(node).__name__


class _Compiler:
    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.keys: dict[str, None] = {}
        self.memory: list[float | None] = []
        self.value_fn: Fn | None = None

    def compile(self, node: ast.AST) -> tuple[Fn, str]:
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            raise _err(node, f"'{_describe(node)}' is not allowed in a rule expression")
        return method(node)

    def _want(self, node: ast.AST, want: str, what: str) -> Fn:
        fn, typ = self.compile(node)
        if typ != want:
            raise _err(node, f"{what} needs a {want}, got {typ} '{_describe(node)}'")
        return fn

    # --- leaves -----------------------------------------------------------------------------------------

    def _Constant(self, node: ast.Constant) -> tuple[Fn, str]:
        v = node.value
        if isinstance(v, bool):
            return (lambda env: v), BOOL
        if isinstance(v, int | float):
            f = _number(node, v)
            return (lambda env: f), NUM
        if isinstance(v, str):
            raise _err(node, f"a string ('{v}') is only allowed as an argument of an indicator function")
        raise _err(node, f"the literal {v!r} is not allowed")

    def _Name(self, node: ast.Name) -> tuple[Fn, str]:
        if node.id in _CONSTANTS:
            c = _CONSTANTS[node.id]
            return (lambda env: c), BOOL
        found = self.resolver.name(node.id)
        if found is None:
            hint = self.resolver.suggest(node.id)
            if node.id in _PURE or node.id in ("crossed_above", "crossed_below") \
                    or self.resolver.is_function(node.id):
                hint = f"; {node.id} is a function, call it"
            raise _err(node, f"unknown signal '{node.id}'{hint}")
        key, typ = found
        self.keys[key] = None
        return operator.itemgetter(key), typ

    # --- operators --------------------------------------------------------------------------------------

    def _UnaryOp(self, node: ast.UnaryOp) -> tuple[Fn, str]:
        if isinstance(node.op, ast.Not):
            f = self._want(node.operand, BOOL, "'not'")
            return (lambda env: not f(env)), BOOL
        if isinstance(node.op, ast.USub | ast.UAdd):
            f = self._want(node.operand, NUM, "a sign")
            if isinstance(node.op, ast.UAdd):
                return f, NUM
            return (lambda env: -f(env)), NUM
        raise _err(node, "the operator '~' is not allowed")

    def _BinOp(self, node: ast.BinOp) -> tuple[Fn, str]:
        op = _ARITH.get(type(node.op))
        if op is None:
            raise _err(node, f"the operator '{_SYMBOL.get(type(node.op), '?')}' is not allowed")
        sym = _SYMBOL[type(node.op)]
        a = self._want(node.left, NUM, f"'{sym}'")
        b = self._want(node.right, NUM, f"'{sym}'")
        if isinstance(node.right, ast.Constant):
            c = float(node.right.value)  # type: ignore[arg-type]  # a number: _want checked it
            if c == 0 and isinstance(node.op, ast.Div | ast.Mod):
                raise _err(node.right, "division by zero")
            return (lambda env: op(a(env), c)), NUM
        return (lambda env: op(a(env), b(env))), NUM

    def _BoolOp(self, node: ast.BoolOp) -> tuple[Fn, str]:
        word = "and" if isinstance(node.op, ast.And) else "or"
        crossings = len(self.memory)
        fns = [self._want(v, BOOL, f"'{word}'") for v in node.values]
        if len(self.memory) != crossings:
            # a crossing must see every evaluation to mean "since the previous one": no short circuit
            if word == "and":
                return (lambda env: all([f(env) for f in fns])), BOOL
            return (lambda env: any([f(env) for f in fns])), BOOL
        if len(fns) == 2:
            a, b = fns
            if word == "and":
                return (lambda env: a(env) and b(env)), BOOL
            return (lambda env: a(env) or b(env)), BOOL
        if word == "and":
            return (lambda env: all(f(env) for f in fns)), BOOL
        return (lambda env: any(f(env) for f in fns)), BOOL

    def _Compare(self, node: ast.Compare) -> tuple[Fn, str]:
        operands = [node.left, *node.comparators]
        compiled = [self.compile(o) for o in operands]
        parts: list[Fn] = []
        for i, opnode in enumerate(node.ops):
            op = _CMP.get(type(opnode))
            if op is None:
                raise _err(node, f"the comparison '{type(opnode).__name__}' is not allowed")
            (fa, ta), (fb, tb) = compiled[i], compiled[i + 1]
            if ta != tb:
                raise _err(operands[i + 1], f"cannot compare {ta} '{_describe(operands[i])}' "
                                            f"with {tb} '{_describe(operands[i + 1])}'")
            if ta == BOOL and op not in (operator.eq, operator.ne):
                raise _err(operands[i], "booleans can only be compared with == or !=")
            parts.append(self._cmp(op, fa, fb, operands[i], operands[i + 1]))
        if self.value_fn is None:
            self.value_fn = compiled[0][0] if compiled[0][1] == NUM else None
        if len(parts) == 1:
            return parts[0], BOOL
        return (lambda env: all(p(env) for p in parts)), BOOL

    @staticmethod
    def _cmp(op: Callable[[Any, Any], bool], fa: Fn, fb: Fn, na: ast.AST, nb: ast.AST) -> Fn:
        # Against a constant, one closure call fewer per comparison.
        if isinstance(nb, ast.Constant):
            c = nb.value if isinstance(nb.value, bool) else float(nb.value)  # type: ignore[arg-type]
            return lambda env: op(fa(env), c)
        return lambda env: op(fa(env), fb(env))

    def _IfExp(self, node: ast.IfExp) -> tuple[Fn, str]:
        c = self._want(node.test, BOOL, "the condition of 'if'")
        crossings = len(self.memory)
        a, ta = self.compile(node.body)
        b, tb = self.compile(node.orelse)
        if ta != tb:
            raise _err(node, f"both branches of 'if' must have one type, got {ta} and {tb}")
        if len(self.memory) != crossings:  # evaluate both branches, so crossings see every evaluation
            return (lambda env: (lambda x, y: x if c(env) else y)(a(env), b(env))), ta
        return (lambda env: a(env) if c(env) else b(env)), ta

    # --- calls ------------------------------------------------------------------------------------------

    def _Call(self, node: ast.Call) -> tuple[Fn, str]:
        if not isinstance(node.func, ast.Name):
            raise _err(node, f"'{_describe(node.func)}' cannot be called; only named functions can")
        name = node.func.id
        if node.keywords:
            raise _err(node.keywords[0], f"{name}() takes positional arguments only")
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise _err(node, "'*' arguments are not allowed")
        if name in _PURE:
            return self._pure(node, name)
        if name in ("crossed_above", "crossed_below"):
            return self._cross(node, name)
        literal = [self._literal(a) for a in node.args]
        if any(v is _NOT_LITERAL for v in literal):
            bad = node.args[literal.index(_NOT_LITERAL)]
            if not self.resolver.is_function(name):
                raise _err(node.func, f"unknown function '{name}'{self.resolver.suggest(name)}")
            raise _err(bad, f"the arguments of {name}() must be literal numbers or strings")
        try:
            found = self.resolver.call(name, tuple(literal))
        except ValueError as exc:
            raise _err(node, f"{name}(): {exc}") from None
        if found is None:
            if self.resolver.name(name) is not None:
                raise _err(node.func, f"'{name}' is a signal, not a function: drop the parentheses")
            raise _err(node.func, f"unknown function '{name}'{self.resolver.suggest(name)}")
        key, typ = found
        self.keys[key] = None
        return operator.itemgetter(key), typ

    def _pure(self, node: ast.Call, name: str) -> tuple[Fn, str]:
        lo, hi, impl = _PURE[name]
        if not lo <= len(node.args) <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            raise _err(node, f"{name}() takes {want} arguments, got {len(node.args)}")
        fns = [self._want(a, NUM, f"{name}()") for a in node.args]
        if len(fns) == 1:
            f = fns[0]
            return (lambda env: impl(f(env))), NUM
        if len(fns) == 2:
            a, b = fns
            return (lambda env: impl(a(env), b(env))), NUM
        return (lambda env: impl(*(f(env) for f in fns))), NUM

    def _cross(self, node: ast.Call, name: str) -> tuple[Fn, str]:
        """``crossed_above(a, b)``: a was at or below b at the previous evaluation and is above it now.
        The previous difference lives in ``memory`` (one slot per call site), so it survives a restart."""
        if len(node.args) != 2:
            raise _err(node, f"{name}() takes 2 arguments, got {len(node.args)}")
        a = self._want(node.args[0], NUM, f"{name}()")
        b = self._want(node.args[1], NUM, f"{name}()")
        mem = self.memory
        slot = len(mem)
        mem.append(None)
        above = name == "crossed_above"

        def crossed(env: dict[str, Any]) -> bool:
            diff = a(env) - b(env)
            prev = mem[slot]
            mem[slot] = diff
            if prev is None:
                return False
            return prev <= 0 < diff if above else prev >= 0 > diff

        return crossed, BOOL

    @staticmethod
    def _literal(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str) \
                and not isinstance(node.value, bool):
            if not isinstance(node.value, str):
                _number(node, node.value)
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) \
                and isinstance(node.operand, ast.Constant) and isinstance(node.operand.value, int | float):
            _number(node.operand, node.operand.value)
            return -node.operand.value
        return _NOT_LITERAL


_NOT_LITERAL = object()


def parse(source: str) -> ast.expr:
    """Parse (no evaluation) with the size caps; raises ExprError with a position."""
    if len(source) > MAX_LENGTH:
        raise ExprError(f"expression longer than {MAX_LENGTH} characters")
    text = source.strip()
    if not text:
        raise ExprError("empty expression")
    # ast positions are relative to the text parsed; parse the original (with its leading spaces) inside
    # parentheses so multi-line YAML scalars keep their line and column numbers.
    try:
        tree = ast.parse("(" + source + "\n)", mode="eval")
    except SyntaxError as exc:
        lines = source.split("\n")
        line = exc.lineno or 1
        col = max((exc.offset or 1) - (1 if line == 1 else 0), 1)
        if line > len(lines):  # the parser ran off the end: point just past the last character
            line = len(lines)
            col = len(lines[-1]) + 1
        msg = (exc.msg or "invalid syntax").replace("'(' was never closed", "unbalanced parentheses")
        raise ExprError(f"syntax error: {msg}", line, col) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ExprError(f"syntax error: {exc}") from None
    for n, node in enumerate(ast.walk(tree)):
        if n >= MAX_NODES:
            raise ExprError(f"expression too large (more than {MAX_NODES} nodes)")
        if isinstance(node, ast.expr | ast.keyword) and node.lineno == 1:
            node.col_offset -= 1  # the '(' we added
            if node.end_lineno == 1 and node.end_col_offset is not None:
                node.end_col_offset -= 1
    return tree.body


def compile_expr(source: str, resolver: Resolver, want: str | None = BOOL) -> Compiled:
    """Compile ``source``; raises ExprError (with the expression-relative position) on any problem."""
    tree = parse(source)
    c = _Compiler(resolver)
    fn, typ = c.compile(tree)
    if want is not None and typ != want:
        raise _err(tree, f"the expression must be a {want} (a condition), got a {typ}")
    return Compiled(source, fn, typ, tuple(c.keys), c.value_fn, c.memory)

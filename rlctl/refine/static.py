"""Static checks of a generated reward program, before any of it runs (the first of the sandbox's two layers).

The program is parsed with :mod:`ast` and refused, with one reason, unless it is plain numeric code: imports of
``math`` and ``numpy`` only; top-level imports, constants and functions only; no name that is not the program's
own, an argument, or a harmless builtin (so no ``open``, ``exec``, ``eval``, ``getattr``, ``globals``,
``__import__``); no attribute that starts with ``_`` (``__class__``, ``__subclasses__``, ``__globals__``), and
none of the attributes that reach files, processes or frames (``np.save``, ``x.tofile``, ``np.ctypeslib``,
``gen.gi_frame.f_back``, ``"{0.__class__}".format``); no classes, ``with``, ``global``; and a top-level
``compute_reward`` whose parameters are variables the env provides. None of this is a proof: the dynamic
layer (:mod:`rlctl.refine.sandbox`) contains what gets past it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable

ALLOWED_MODULES = ("math", "numpy", "numpy.linalg")
SAFE_BUILTINS = (
    "abs", "all", "any", "bool", "dict", "divmod", "enumerate", "filter", "float", "int", "isinstance", "len",
    "list", "map", "max", "min", "pow", "range", "reversed", "round", "set", "slice", "sorted", "str", "sum",
    "tuple", "zip", "ArithmeticError", "Exception", "FloatingPointError", "IndexError", "KeyError",
    "OverflowError", "TypeError", "ValueError", "ZeroDivisionError",
)
DANGEROUS_NAMES = ("open", "exec", "eval", "compile", "getattr", "setattr", "delattr", "globals", "locals", "vars",
                   "__import__", "__builtins__", "input", "breakpoint", "type", "object", "memoryview", "print",
                   "hasattr")
# attributes that reach files, processes, native memory, randomness, frames or code objects
FORBIDDEN_ATTRS = frozenset({
    "format", "format_map", "tofile", "dump", "dumps", "load", "loads", "save", "savez", "savez_compressed",
    "savetxt", "loadtxt", "genfromtxt", "fromfile", "fromregex", "memmap", "ctypes", "ctypeslib", "lib", "f2py",
    "distutils", "testing", "random", "os", "sys", "DataSource", "core", "show_config", "get_include", "info",
    "lookfor", "source", "seterrcall", "mro",
})
FORBIDDEN_ATTR_PREFIXES = ("_", "f_", "gi_", "cr_", "ag_", "tb_", "co_")
FORBIDDEN_NODES = {
    ast.ClassDef: "classes", ast.AsyncFunctionDef: "async functions", ast.Await: "await", ast.AsyncFor: "async for",
    ast.AsyncWith: "async with", ast.With: "with-statements", ast.Global: "global", ast.Nonlocal: "nonlocal",
    ast.Yield: "generators (yield)", ast.YieldFrom: "generators (yield from)",
}
MAX_SOURCE_CHARS = 20_000
MAX_NODES = 5_000
FUNCTION = "compute_reward"


class ProgramRejected(Exception):
    """A program refused before it ran: ``reason`` says why, in one line that can go back to the LLM."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        self.reason = reason if line is None else f"line {line}: {reason}"
        super().__init__(self.reason)


def check_program(source: str, variables: Iterable[str]) -> list[str]:
    """Raise :class:`ProgramRejected` unless ``source`` passes every check; the parameters ``compute_reward``
    asks for (all of ``variables`` when it takes ``**kwargs``)."""
    if len(source) > MAX_SOURCE_CHARS:
        raise ProgramRejected(f"the program is {len(source)} characters long (at most {MAX_SOURCE_CHARS})")
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ProgramRejected(f"syntax error: {exc.msg}", exc.lineno) from None
    except (ValueError, RecursionError, MemoryError) as exc:  # null bytes, absurd nesting
        raise ProgramRejected(f"the program cannot be parsed ({type(exc).__name__})") from None
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_NODES:
        raise ProgramRejected(f"the program has {len(nodes)} syntax nodes (at most {MAX_NODES})")
    _check_top_level(tree)
    bound = _bound_names(nodes)
    for node in nodes:
        _check_node(node, bound)
    return _signature(tree, list(variables))


def _check_top_level(tree: ast.Module) -> None:
    for stmt in tree.body:
        docstring = isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
        if not (docstring or isinstance(stmt, ast.Import | ast.ImportFrom | ast.FunctionDef | ast.Assign
                                        | ast.AnnAssign)):
            raise ProgramRejected(f"top-level {type(stmt).__name__} statement: only imports, constants and "
                                  "functions may stand outside a function", stmt.lineno)


def _bound_names(nodes: list[ast.AST]) -> set[str]:
    """Every name the program itself binds: functions, arguments, assignment and loop targets, imports."""
    bound: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.FunctionDef):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            bound.add(node.id)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return bound


def _check_node(node: ast.AST, bound: set[str]) -> None:
    line = getattr(node, "lineno", None)
    for kind, what in FORBIDDEN_NODES.items():
        if isinstance(node, kind):
            raise ProgramRejected(f"{what} are not allowed in a reward program", line)
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name not in ALLOWED_MODULES:
                raise ProgramRejected(f"import of {alias.name!r} is not allowed (only math and numpy)", line)
    elif isinstance(node, ast.ImportFrom):
        if node.level or node.module not in ALLOWED_MODULES:
            raise ProgramRejected(f"import from {node.module!r} is not allowed (only math and numpy)", line)
        for alias in node.names:
            if alias.name == "*" or _bad_attr(alias.name):
                raise ProgramRejected(f"'from {node.module} import {alias.name}' is not allowed", line)
    elif isinstance(node, ast.Attribute):
        if _bad_attr(node.attr):
            raise ProgramRejected(f"attribute {node.attr!r} is not allowed (no private, dunder, file, process, "
                                  "frame or random access)", line)
        if not isinstance(node.ctx, ast.Load):
            raise ProgramRejected(f"assigning or deleting attribute {node.attr!r} is not allowed", line)
    elif isinstance(node, ast.Name):
        if node.id in DANGEROUS_NAMES or node.id.startswith("__"):
            raise ProgramRejected(f"name {node.id!r} is not allowed", line)
        if isinstance(node.ctx, ast.Load) and node.id not in bound and node.id not in SAFE_BUILTINS:
            raise ProgramRejected(f"name {node.id!r} is not defined or not allowed (a reward program may use its "
                                  "arguments, its own names, math, numpy and basic builtins such as abs, min, max, "
                                  "sum, range, float)", line)
    elif isinstance(node, ast.FunctionDef) and node.decorator_list:
        raise ProgramRejected(f"decorators are not allowed (on {node.name})", line)


def _bad_attr(name: str) -> bool:
    return name in FORBIDDEN_ATTRS or name.startswith(FORBIDDEN_ATTR_PREFIXES)


def _signature(tree: ast.Module, variables: list[str]) -> list[str]:
    fns = [s for s in tree.body if isinstance(s, ast.FunctionDef) and s.name == FUNCTION]
    if not fns:
        raise ProgramRejected(f"no top-level function {FUNCTION}(...) in the program")
    args = fns[-1].args
    if args.vararg:
        raise ProgramRejected(f"{FUNCTION} takes *{args.vararg.arg}; name the variables it needs instead")
    names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    unknown = [n for n in names if n not in variables]
    if unknown:
        raise ProgramRejected(f"{FUNCTION}({', '.join(names)}): unknown variable {unknown[0]!r}; the env provides: "
                              f"{', '.join(variables)}")
    if args.kwarg:
        return list(variables)
    if not names:
        raise ProgramRejected(f"{FUNCTION} takes no variables")
    return names

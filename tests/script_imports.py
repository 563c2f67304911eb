"""The modules that a rule's script imports when it runs, found with :mod:`ast`: its own imports and, followed
transitively, those of the lesionseg modules it uses (tests/test_environment.py checks them against the rule's
conda environment).

Imports inside functions count, as they run when the function is called: those of a module-level function once
some code that counts uses its name (a function that nothing names never runs), those of any other function (a
method, a nested function) with the code around it. Imports under ``if TYPE_CHECKING:`` never run.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "lesionseg"
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the directory that holds the lesionseg package


@dataclass(frozen=True)
class Code:
    """What some code imports (absolute module names) and the names it uses (of functions it may call)."""

    imports: frozenset[str]
    names: frozenset[str]


@dataclass(frozen=True)
class Module:
    """A parsed module: the code its import runs, and the body of each module-level function, by name."""

    top_level: Code
    functions: dict[str, Code]


def is_type_checking_block(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` (or ``if typing.TYPE_CHECKING:``)."""
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def executed_nodes(nodes: Iterable[ast.AST]) -> Iterator[ast.AST]:
    """These nodes and everything under them, except the bodies of ``if TYPE_CHECKING:`` (their ``else:`` runs)."""
    for node in nodes:
        yield node
        children = node.orelse if is_type_checking_block(node) else ast.iter_child_nodes(node)
        yield from executed_nodes(children)


def absolute_module(importer: str, is_package: bool, module: str | None, level: int) -> str:
    """The absolute name of ``from <level dots><module> import ...`` written in module ``importer``."""
    if level == 0:
        return module or ""
    package = importer.split(".") if is_package else importer.split(".")[:-1]
    return ".".join(package[:len(package) - level + 1] + ([module] if module else []))


def code_of(nodes: Iterable[ast.AST], importer: str, is_package: bool) -> Code:
    """What these nodes import and the names they use; ``from a import b`` imports ``a`` and ``a.b`` (``b`` may be
    a module) and uses the name ``b`` (it may be a function)."""
    imports, names = set(), set()
    for node in executed_nodes(nodes):
        if isinstance(node, ast.Import):
            imports.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = absolute_module(importer, is_package, node.module, node.level)
            imports.add(module)
            imports.update(f"{module}.{alias.name}" for alias in node.names if alias.name != "*")
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
    return Code(frozenset(imports), frozenset(names))


def parse_module(path: Path, name: str) -> Module:
    """Split a module (``name`` is its dotted name, ``""`` for a script) into the code that runs on import (with
    the decorators and default values of its functions) and the bodies of its module-level functions."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    top_level, bodies = [], {}
    for statement in tree.body:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
            top_level += [*statement.decorator_list, *statement.args.defaults, *statement.args.kw_defaults]
            bodies.setdefault(statement.name, []).extend(statement.body)
        else:
            top_level.append(statement)
    return Module(code_of(filter(None, top_level), name, is_package),
                  {function: code_of(body, name, is_package) for function, body in bodies.items()})


def package_file(module: str) -> Path | None:
    """The source file of a module of the lesionseg package (None for anything else, or a name in a module)."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = PACKAGE_ROOT.joinpath(*parts)
    return next((path for path in (base / "__init__.py", base.with_suffix(".py")) if path.is_file()), None)


def with_parent_packages(module: str) -> list[str]:
    """A module and the packages above it, which importing it runs: ``a.b.c`` gives ``a``, ``a.b``, ``a.b.c``."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def third_party_imports(script: Path) -> dict[str, str]:
    """The top-level modules outside the standard library and lesionseg that a script imports when it runs,
    each with where it was first seen imported (a module, or a module's function)."""
    modules = {script.name: parse_module(script, "")}
    found: dict[str, str] = {}
    used_names: set[str] = set()
    counted_functions: set[str] = set()
    pending = [(script.name, modules[script.name].top_level)]
    while pending:
        where, code = pending.pop()
        used_names |= code.names
        for imported in code.imports:
            for module in with_parent_packages(imported):
                if module.split(".")[0] != PACKAGE:
                    found.setdefault(module.split(".")[0], where)
                elif module not in modules and (source := package_file(module)):
                    modules[module] = parse_module(source, module)
                    pending.append((module, modules[module].top_level))
        if not pending:  # every function that the code counted so far names may run
            pending = [(f"{name}.{function}", body) for name, module in modules.items()
                       for function, body in module.functions.items()
                       if function in used_names and f"{name}.{function}" not in counted_functions]
            counted_functions.update(where for where, _ in pending)
    return {module: where for module, where in found.items() if module and module not in sys.stdlib_module_names}

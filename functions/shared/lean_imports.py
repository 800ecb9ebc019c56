"""Load a re-exporting package's names on first use instead of importing every module it lists.

Powertools' `event_handler` and `utilities.data_classes` packages import every resolver and every
event class in their `__init__` (AppSync, Bedrock agents, VPC Lattice, Kafka, S3 batch, ...): about
40 ms of every cold start, for the two or three classes a function uses. `defer_package_init`
registers such a package so that importing one of its submodules, or taking one of its names, loads
only the module that defines it.

Only a package whose `__init__` holds nothing but a docstring, `from ... import` of its own
submodules and `__all__` is deferred; any other one is left to be imported as usual.
"""

import ast
import importlib
import importlib.util
import sys
from typing import Any


def defer_package_init(name: str) -> bool:
    """Whether `name` is now deferred: False if it was imported already or its `__init__` does more."""
    if name in sys.modules:
        return False
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None or not spec.submodule_search_locations:
        return False
    with open(spec.origin, encoding="utf-8") as source:
        exports = re_exports(name, source.read())
    if exports is None:
        return False
    package = importlib.util.module_from_spec(spec)  # its __path__ and __spec__, without running it

    def load(attribute: str) -> Any:
        if attribute not in exports:
            raise AttributeError(f"module {name!r} has no attribute {attribute!r}")
        module, original = exports[attribute]
        value = getattr(importlib.import_module(module), original)
        setattr(package, attribute, value)
        return value

    package.__getattr__ = load  # type: ignore[method-assign]  # PEP 562: a module's missing names
    package.__all__ = list(exports)  # type: ignore[attr-defined]
    sys.modules[name] = package
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, package)
    for attribute, (module, _) in exports.items():
        if module == f"{name}.{attribute}":  # a submodule of that name, once imported, would hide it
            load(attribute)
    return True


def re_exports(package: str, source: str) -> dict[str, tuple[str, str]] | None:
    """{exported name: (defining module, its name there)}, or None if the source does anything else."""
    exports: dict[str, tuple[str, str]] = {}
    for statement in ast.parse(source).body:
        if isinstance(statement, ast.ImportFrom):
            if statement.level > 1 or statement.module is None:
                return None
            module = f"{package}.{statement.module}" if statement.level else statement.module
            if not module.startswith(f"{package}."):
                return None
            for alias in statement.names:
                exports[alias.asname or alias.name] = (module, alias.name)
        elif not (_is_docstring(statement) or _is_all(statement)):
            return None
    return exports


def _is_docstring(statement: ast.stmt) -> bool:
    return isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)


def _is_all(statement: ast.stmt) -> bool:
    targets = (
        [ast.unparse(target) for target in statement.targets] if isinstance(statement, ast.Assign) else []
    )
    return targets == ["__all__"]

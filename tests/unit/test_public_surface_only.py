"""No module in functions/ (nor in local/ or benchmarks/, which run the same libraries) reaches into a
private name of powertools, botocore, pynamodb or moto.

A private name (one leading underscore) is free to change in any release: code that uses one breaks
on an upgrade that keeps every public promise. Read from the source, so it holds for code no test
runs. A name is the service's own when it is an attribute of `self` or `cls` in a class that derives
from none of those libraries; NamedTuple's documented `_replace`, `_asdict`, `_fields`, `_make` and
`_field_defaults` are public API despite their underscore.
"""

import ast
import re
from pathlib import Path

import pytest

from tests.support.table import ROOT

FUNCTIONS = ROOT / "functions"
LIBRARIES = ("aws_lambda_powertools", "botocore", "boto3", "pynamodb", "moto", "aws_xray_sdk")
NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_make", "_field_defaults"}
# Ways to replace a library's modules rather than use them.
MODULE_TRICKS = {"module_from_spec", "spec_from_file_location", "spec_from_loader", "find_spec"}
# What the session's stop hook looks for, verbatim.
STOP_HOOK = re.compile(
    r"\._(get_connection|get_schema|is_tracer_disabled|loaders|make_api_call)\b|sys\.modules\[|module_from_spec"
)
MODULES = sorted(FUNCTIONS.rglob("*.py"))
# Code of ours beside the service that drives the same libraries: held to the same rule.
OTHER_MODULES = sorted(path for folder in ("local", "benchmarks") for path in (ROOT / folder).rglob("*.py"))


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def from_library(module: str | None) -> bool:
    return module is not None and module.split(".")[0] in LIBRARIES


def library_names(tree: ast.Module) -> set[str]:
    """Names a module binds to something imported from one of the libraries."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {
                alias.asname or alias.name.split(".")[0] for alias in node.names if from_library(alias.name)
            }
        elif isinstance(node, ast.ImportFrom) and from_library(node.module):
            names |= {alias.asname or alias.name for alias in node.names}
    return names


def derived_classes(tree: ast.Module, derived: set[str]) -> set[str]:
    """Classes of a module that derive, directly or through another known one, from a library class."""
    bases = {
        node.name: {ast.unparse(base).split(".")[0].split("[")[0] for base in node.bases}
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
    }
    derived = derived | library_names(tree)
    while True:
        more = {name for name, named in bases.items() if named & derived} - derived
        if not more:
            return derived
        derived |= more


def service_library_classes() -> set[str]:
    """Every class in functions/ that derives from a library class (pynamodb models, ...)."""
    derived: set[str] = set()
    for _ in range(3):  # a class may derive from one defined in a module read later
        for path in MODULES:
            derived = derived_classes(ast.parse(path.read_text(encoding="utf-8")), derived)
    return derived


DERIVED = service_library_classes()


def violations(path: Path) -> list[str]:
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    derived = derived_classes(tree, DERIVED)
    found = [f"stop-hook pattern {match.group(0)!r}" for match in STOP_HOOK.finditer(source)]
    own_class: dict[ast.AST, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for inner in ast.walk(node):
                own_class.setdefault(inner, node.name)
    for node in ast.walk(tree):
        where = f"line {getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.ImportFrom) and from_library(node.module):
            module_parts = (node.module or "").split(".")
            private = [part for part in module_parts if is_private(part)]
            private += [alias.name for alias in node.names if is_private(alias.name)]
            found += [f"{where}: imports private {name} from {node.module}" for name in private]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if from_library(alias.name) and any(is_private(part) for part in alias.name.split(".")):
                    found.append(f"{where}: imports private module {alias.name}")
        elif isinstance(node, ast.Attribute):
            if node.attr == "modules" and isinstance(node.value, ast.Name) and node.value.id == "sys":
                found.append(f"{where}: sys.modules")
            if node.attr in MODULE_TRICKS:
                found.append(f"{where}: {node.attr}")
            if is_private(node.attr) and node.attr not in NAMEDTUPLE_API:
                owner = node.value.id if isinstance(node.value, ast.Name) else None
                own = owner in ("self", "cls") and own_class.get(node) not in derived
                if not own:
                    found.append(f"{where}: {ast.unparse(node)}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) > 1:
                name = node.args[1]
                if isinstance(name, ast.Constant) and isinstance(name.value, str) and is_private(name.value):
                    found.append(f"{where}: {node.func.id}(..., {name.value!r})")
            if node.func.id in MODULE_TRICKS:
                found.append(f"{where}: {node.func.id}")
        elif isinstance(node, ast.Name) and node.id in MODULE_TRICKS:
            found.append(f"{where}: {node.id}")
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(FUNCTIONS)))
def test_module_uses_only_public_names_of_its_libraries(path: Path) -> None:
    assert violations(path) == []


@pytest.mark.parametrize("path", OTHER_MODULES, ids=lambda path: str(path.relative_to(ROOT)))
def test_local_and_benchmark_modules_use_only_public_names_too(path: Path) -> None:
    assert violations(path) == []


@pytest.mark.parametrize(
    "line",
    [
        "SegmentItem._get_connection().connection = shared",
        "Tracer._is_tracer_disabled()",
        "session.get_component('data_loader')._loaders",
        "client._make_api_call('Query', {})",
        "sys.modules['aws_lambda_powertools.event_handler'] = package",
        "package = importlib.util.module_from_spec(spec)",
        "from botocore._helpers import something",
        "getattr(Tracer, '_is_tracer_disabled')()",
        "class Fake(BaseProvider):\n    def run(self):\n        return self._config",
    ],
)
def test_the_scan_catches_each_way_of_reaching_in(line: str, tmp_path: Path) -> None:
    module = tmp_path / "reaching_in.py"
    module.write_text(f"import sys\nfrom aws_lambda_powertools.tracing.base import BaseProvider\n{line}\n")
    assert violations(module) != []


def test_the_service_s_own_private_attributes_pass(tmp_path: Path) -> None:
    module = tmp_path / "own.py"
    module.write_text(
        "class Store:\n"
        "    def __init__(self, s3):\n"
        "        self._s3 = s3\n"
        "    def run(self, record):\n"
        "        return self._s3, record._replace(state=1)\n"
    )
    assert violations(module) == []

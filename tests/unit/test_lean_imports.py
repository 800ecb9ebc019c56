"""A cold start loads only the powertools modules its function uses, and sees the same classes."""

import json
import os
import subprocess
import sys

import pytest

from shared.lean_imports import defer_package_init, re_exports
from tests.support.table import ROOT

DEFERRED = ["aws_lambda_powertools.event_handler", "aws_lambda_powertools.utilities.data_classes"]
# Resolvers and event classes no function of this service uses.
UNUSED = [
    "aws_lambda_powertools.event_handler.appsync",
    "aws_lambda_powertools.event_handler.bedrock_agent",
    "aws_lambda_powertools.event_handler.vpc_lattice",
    "aws_lambda_powertools.event_handler.events_appsync.appsync_events",
    "aws_lambda_powertools.utilities.data_classes.code_pipeline_job_event",
    "aws_lambda_powertools.utilities.data_classes.cloud_watch_alarm_event",
    "aws_lambda_powertools.utilities.data_classes.kinesis_firehose_event",
]


def fresh_python(script: str) -> str:
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "functions")}
    done = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("handler", ["api_get_user_segments", "api_update_user_segments", "stream_table"])
def test_a_function_loads_none_of_the_resolvers_and_events_it_does_not_use(handler: str) -> None:
    loaded = json.loads(
        fresh_python(f"import sys, json, handlers.{handler}; print(json.dumps(list(sys.modules)))")
    )
    assert f"handlers.{handler}" in loaded
    assert [module for module in UNUSED if module in loaded] == []


def test_every_name_of_a_deferred_package_is_the_object_a_full_import_gives() -> None:
    describe = (
        "import importlib, json\n"
        "found = {}\n"
        f"for name in {DEFERRED!r}:\n"
        "    package = importlib.import_module(name)\n"
        "    for attribute in package.__all__:\n"
        "        value = getattr(package, attribute)\n"
        "        found[name + '.' + attribute] = f'{value.__module__}.{value.__qualname__}'\n"
        "print(json.dumps(found))\n"
    )
    deferred = json.loads(fresh_python("import handlers\n" + describe))
    imported = json.loads(fresh_python(describe))
    assert len(imported) > 50
    assert deferred == imported


def test_a_name_its_own_submodule_shares_stays_the_name_not_the_module() -> None:
    # data_classes exports the function event_source from its submodule event_source.
    script = (
        "import handlers\n"
        "import aws_lambda_powertools.utilities.data_classes.event_source\n"
        "from aws_lambda_powertools.utilities.data_classes import event_source\n"
        "print(callable(event_source) and not isinstance(event_source, type(handlers)))"
    )
    assert fresh_python(script).strip() == "True"


def test_a_deferred_package_still_says_which_name_it_lacks() -> None:
    script = (
        "import handlers, aws_lambda_powertools.event_handler as package\n"
        "try:\n    package.NoSuchResolver\nexcept AttributeError as error:\n    print(error)"
    )
    assert "has no attribute 'NoSuchResolver'" in fresh_python(script)


def test_a_package_whose_init_does_more_than_re_export_is_imported_as_usual() -> None:
    assert re_exports(
        "pkg", '"""Doc."""\nfrom .a import A\nfrom pkg.b import B as C\n__all__ = ["A", "C"]\n'
    ) == {
        "A": ("pkg.a", "A"),
        "C": ("pkg.b", "B"),
    }
    assert re_exports("pkg", "from .a import A\nDEFAULT = A()\n") is None
    assert re_exports("pkg", "from other.a import A\n") is None
    assert re_exports("pkg", "import os\n") is None
    assert defer_package_init("json") is False  # already imported; and its __init__ holds code

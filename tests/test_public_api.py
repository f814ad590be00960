"""The public surface: ``graphorch.__all__``, the exceptions tree, a light import."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
import types
from typing import Any

import pytest

import graphorch
import graphorch.exceptions as exc_module


def _ruff_sort_key(name: str) -> tuple[int, str]:
    """Ruff's RUF022 order: SCREAMING_CASE, then CamelCase, then everything else."""
    if name.isupper() and not name.startswith("_"):
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


def test_every_name_in_all_exists() -> None:
    missing = [n for n in graphorch.__all__ if not hasattr(graphorch, n)]
    assert missing == []


def test_all_is_sorted_and_unique() -> None:
    names = list(graphorch.__all__)
    assert len(names) == len(set(names)), [n for n in names if names.count(n) > 1]
    assert names == sorted(names, key=_ruff_sort_key)


def _public_objects() -> list[tuple[str, Any]]:
    return [(n, getattr(graphorch, n)) for n in graphorch.__all__ if n != "__version__"]


def test_public_objects_come_from_graphorch() -> None:
    strays: list[str] = []
    for name, obj in _public_objects():
        if isinstance(obj, str):  # constants such as START
            continue
        if inspect.isclass(obj) or inspect.isfunction(obj) or hasattr(obj, "__supertype__"):
            module = obj.__module__
        else:
            module = type(obj).__module__  # instances such as go.append
        if not module.startswith("graphorch"):
            strays.append(f"{name} ({module})")
    assert strays == []


def test_public_classes_and_functions_are_documented() -> None:
    undocumented = [
        name
        for name, obj in _public_objects()
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and not inspect.getdoc(obj)
    ]
    assert undocumented == []


def test_no_names_leak_beyond_all() -> None:
    leaked = [
        n
        for n in dir(graphorch)
        if not n.startswith("_")
        and n not in graphorch.__all__
        and not isinstance(getattr(graphorch, n), types.ModuleType)
    ]
    assert leaked == []


def test_version_is_a_string() -> None:
    assert isinstance(graphorch.__version__, str) and graphorch.__version__.count(".") >= 1


# -- the exceptions tree -------------------------------------------------------


def _exception_classes() -> list[type[BaseException]]:
    return [
        obj
        for obj in vars(exc_module).values()
        if inspect.isclass(obj)
        and issubclass(obj, BaseException)
        and obj.__module__ == exc_module.__name__
    ]


def test_exceptions_module_all_lists_every_exception() -> None:
    assert sorted(c.__name__ for c in _exception_classes()) == sorted(exc_module.__all__)


def test_every_exception_derives_from_graphorch_error() -> None:
    classes = _exception_classes()
    assert len(classes) >= 20
    for cls in classes:
        assert issubclass(cls, graphorch.GraphorchError), cls
        assert cls.__doc__, cls


def test_every_exception_is_exported_from_the_package() -> None:
    hidden = [
        c.__name__ for c in _exception_classes() if getattr(graphorch, c.__name__, None) is not c
    ]
    assert hidden == [], "add these to graphorch/__init__.py and its __all__"


def test_the_branches_do_not_overlap() -> None:
    branches = (
        graphorch.DefinitionError,
        graphorch.RunError,
        graphorch.StoreError,
        graphorch.RenderError,
        graphorch.MissingDependencyError,
    )
    for cls in _exception_classes():
        if cls in (graphorch.GraphorchError, *branches):
            continue
        assert sum(issubclass(cls, b) for b in branches) == 1, cls


def test_definition_errors() -> None:
    for cls in (graphorch.GraphDefinitionError, graphorch.InputValidationError):
        assert issubclass(cls, graphorch.DefinitionError)
    assert issubclass(graphorch.DefinitionError, ValueError)  # bad arguments are ValueErrors
    err = graphorch.GraphDefinitionError("g", ["node 'a' is bad", "node 'b' is worse"])
    assert err.graph == "g" and err.problems == ["node 'a' is bad", "node 'b' is worse"]
    assert str(err) == "graph 'g' has 2 problems:\n  - node 'a' is bad\n  - node 'b' is worse"
    assert str(graphorch.GraphDefinitionError("g", ["x"])).startswith("graph 'g' has 1 problem:")


def _run_error_classes() -> list[type[graphorch.RunError]]:
    return [c for c in _exception_classes() if issubclass(c, graphorch.RunError)]


def _make(cls: type[graphorch.RunError], **kw: Any) -> graphorch.RunError:
    """Build ``cls("it broke", **kw)``, filling any further required keyword arguments."""
    params = inspect.signature(cls).parameters.values()
    extra = {
        p.name: f"<{p.name}>"
        for p in params
        if p.kind is p.KEYWORD_ONLY and p.default is p.empty and p.name not in kw
    }
    return cls("it broke", **kw, **extra)


def test_the_core_run_errors_exist() -> None:
    core = {
        "NodeError",
        "NodeTimeoutError",
        "EdgeConditionError",
        "StateUpdateError",
        "ConflictingUpdateError",
        "UnserializableStateError",
        "RunLimitError",
        "MaxStepsExceededError",
        "VisitLimitExceededError",
        "RunTimeoutError",
        "RunCancelledError",
        "RunNotActiveError",
        "LeaseLostError",
    }
    assert core <= {c.__name__ for c in _run_error_classes()}


@pytest.mark.parametrize("cls", _run_error_classes(), ids=lambda c: c.__name__)
def test_run_errors_carry_run_id_and_node(cls: type[graphorch.RunError]) -> None:
    err = _make(cls, run_id="r1", node="plan")
    assert err.run_id == "r1" and err.node == "plan"
    assert str(err) == "[run r1, node 'plan'] it broke"
    bare = _make(cls)
    assert bare.run_id is None and bare.node is None and str(bare) == "it broke"


def test_state_update_errors_name_the_field() -> None:
    err = graphorch.ConflictingUpdateError("clash", run_id="r", node="n", field="log")
    assert err.field == "log" and isinstance(err, graphorch.StateUpdateError)


def test_store_errors() -> None:
    assert issubclass(graphorch.RunNotFoundError, KeyError)
    assert "no run 'abc'" in str(graphorch.RunNotFoundError("abc"))
    assert str(graphorch.CheckpointNotFoundError("no checkpoint 3")) == "no checkpoint 3"


# -- a light import ------------------------------------------------------------


def _run_python(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_import_does_not_load_networkx_or_graphviz() -> None:
    out = _run_python(
        """
        import sys
        import graphorch
        heavy = sorted(
            m for m in sys.modules if m.split(".")[0] in ("networkx", "graphviz", "numpy")
        )
        print(",".join(heavy) or "none")
        """
    )
    assert out == "none"


def test_freezing_loads_networkx_lazily() -> None:
    # the check above can fail: networkx does show up once a graph is validated
    out = _run_python(
        """
        import sys
        from pydantic import BaseModel
        import graphorch as go

        class S(BaseModel):
            x: int = 0

        g = go.Graph("g", state=S)
        g.end("done")
        g.edge(go.START, "done")
        before = "networkx" in sys.modules
        g.freeze()
        print(before, "networkx" in sys.modules)
        """
    )
    assert out == "False True"

"""Jupyter display and a stepper (being written; see the [see] issue)."""

from __future__ import annotations

from typing import Any


def graph_mimebundle(graph: Any, include: Any = None, exclude: Any = None) -> dict[str, Any]:
    """The rich display of a graph."""
    return {"text/plain": repr(graph)}


def run_mimebundle(run: Any, include: Any = None, exclude: Any = None) -> dict[str, Any]:
    """The rich display of a run."""
    return {"text/plain": repr(run)}

"""What the three examples share: driving a run step by step and reporting progress."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import graphorch as go

__all__ = ["Progress", "describe_step", "drive", "quiet"]

Progress = Callable[[str], None]
"""Receives one line of progress text (the CLI prints it on stderr)."""


def quiet(line: str) -> None:
    """A progress callback that shows nothing."""
    del line


def describe_step(step: go.StepResult) -> str:
    """One line for a step: its number, the node(s) that ran, and what comes next."""
    then = ", ".join(step.next_nodes) if step.next_nodes else step.status.value
    changed = f" (changed {', '.join(sorted(step.changes))})" if step.changes else ""
    return f"step {step.step:>3}  {step.node} -> {then}{changed}"


async def drive(run: go.Run[Any], progress: Progress = quiet) -> go.RunResult[Any]:
    """Advance ``run`` one step at a time until it stops, reporting every step."""
    while run.active:
        progress(describe_step(await run.step()))
    return run.result()

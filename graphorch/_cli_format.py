"""How the CLI shows things: tables, JSON-ready dicts, one-line summaries."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic_core import to_jsonable_python

import graphorch as go
from graphorch.store.base import AuditRow

__all__ = [
    "approval_data",
    "checkpoint_data",
    "dumps",
    "event_summary",
    "result_data",
    "run_data",
    "short",
    "table",
]


def dumps(data: Any) -> str:
    """JSON text for anything the CLI prints with ``--json``."""
    return json.dumps(to_jsonable_python(data, fallback=str), indent=2, ensure_ascii=False)


def short(value: Any, limit: int = 80) -> str:
    """A value as one line of at most ``limit`` characters."""
    text = value if isinstance(value, str) else json.dumps(to_jsonable_python(value, fallback=str))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table with left-aligned columns."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    return "\n".join(lines)


def run_data(record: go.RunRecord) -> dict[str, Any]:
    """A stored run as a JSON-ready dict."""
    return {
        "run_id": record.run_id,
        "graph": record.graph,
        "status": record.status.value,
        "reason": record.reason,
        "node": record.error_node,
        "seq": record.seq,
        "next_nodes": list(record.next_nodes),
        "created_at": _time(record.created_at),
        "updated_at": _time(record.updated_at),
        "parent_run": record.parent_run,
        "forked_from": record.forked_from,
        "output": json.loads(record.output) if record.output is not None else None,
    }


def checkpoint_data(cp: go.CheckpointInfo) -> dict[str, Any]:
    """A checkpoint of a run's history as a JSON-ready dict."""
    return {
        "seq": cp.seq,
        "checkpoint_id": cp.checkpoint_id,
        "nodes": list(cp.nodes),
        "next_nodes": list(cp.next_nodes),
        "status": cp.status.value,
        "changed": list(cp.changed),
        "created_at": _time(cp.created_at),
        "parent": cp.parent,
    }


def _json_bytes(raw: bytes | None) -> Any:
    return None if raw is None else json.loads(raw)


def approval_data(a: go.ApprovalRecord) -> dict[str, Any]:
    """An approval as a JSON-ready dict."""
    return {
        "approval_id": a.approval_id,
        "run_id": a.run_id,
        "node": a.node,
        "status": a.status.value,
        "prompt": a.prompt,
        "tool": a.tool,
        "args": _json_bytes(a.args),
        "context": _json_bytes(a.context) if a.context else None,
        "approvers": list(a.approvers),
        "roles": list(a.roles),
        "requested_at": _time(a.requested_at),
        "expires_at": _time(a.expires_at),
        "decided_by": a.decided_by,
        "comment": a.comment,
    }


def result_data(
    result: go.RunResult[Any], graph: str, pending: Sequence[go.ApprovalRecord] = ()
) -> dict[str, Any]:
    """Where a run stands after the CLI drove it, as a JSON-ready dict."""
    state = result.state.model_dump(mode="json") if result.state is not None else None
    return {
        "run_id": result.run_id,
        "graph": graph,
        "status": result.status.value,
        "reason": result.reason,
        "node": result.node,
        "steps": result.steps,
        "output": to_jsonable_python(result.output, fallback=str),
        "state": state,
        "pending_approvals": [approval_data(a) for a in pending],
    }


_SKIP = frozenset({"kind", "run_id", "step", "at"})


def event_summary(data: Mapping[str, Any], limit: int = 90) -> str:
    """An event's fields (but its kind, run, step and time) as ``key=value`` pairs."""
    parts = [
        f"{k}={short(v, 40)}"
        for k, v in data.items()
        if k not in _SKIP and v not in (None, "", [], (), {})
    ]
    return short(" ".join(parts), limit)


def audit_row_data(row: AuditRow) -> dict[str, Any]:
    """An audit row as a JSON-ready dict."""
    return {
        "position": row.position,
        "event": row.event,
        "prev_hash": row.prev_hash,
        "hash": row.hash,
    }

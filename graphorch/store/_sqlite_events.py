"""How an event's JSON is stored compactly in SQLite (schema version 4).

An event is hashed as its JSON (see :mod:`graphorch.store._audit`), but stored with the
text every row repeats replaced by one control character: the ``{"kind":"...","step":``
prefix of the common kinds, the names of common fields, and the run id inside values
(``"<run_id>:3"`` checkpoint ids and call keys). A JSON encoder always escapes control
characters inside strings, so none of these codes can occur in an event's JSON: expanding
them gives back the exact text, byte for byte, and the hash chain is unchanged.

The tables below are part of the file format: never change or reorder an entry; a new
entry needs a new schema version.
"""

from __future__ import annotations

import re

__all__ = ["compact", "compact_many", "expand", "expander"]

# Codes 0x01-0x0c: the opening of the most frequent kinds.
_KINDS = (
    "step_finished",
    "tool_called",
    "run_started",
    "model_called",
    "step_started",
    "run_finished",
    "approval_requested",
    "approval_decided",
    "child_run_started",
    "retrying",
    "call_resolved",
    "run_waiting",
)
# Codes 0x0d-0x1d: frequent fields. A value's opening quote is not swallowed, so a
# string value such as "a" stays visible as it is in the JSON.
_FIELDS = (
    ',"at":',
    ',"node":',
    ',"changed":',
    ',"next_nodes":',
    ',"checkpoint":',
    ',"role":',
    ',"tool":',
    ',"key":',
    ',"args":',
    ',"outcome":"succeeded"',
    ',"decision":"allow"',
    ',"duration":',
    ',"error":null}',
    ',"reason":',
    ',"graph":',
    ',"forked_from":null',
    ',"approval_id":',
)
_RUN = "\x1e"  # '"<run_id>:' inside a value becomes '"' + this code
_RAW = "\x1f"  # the rest of the text is stored as it is (it holds control characters)

_KIND_CODE = {kind: chr(1 + i) for i, kind in enumerate(_KINDS)}
_FIELD_CODES = tuple((text, chr(1 + len(_KINDS) + i)) for i, text in enumerate(_FIELDS))
_TABLE: dict[int, str] = {1 + i: f'{{"kind":"{kind}","step":' for i, kind in enumerate(_KINDS)}
_TABLE.update({ord(code): text for text, code in _FIELD_CODES})
assert len(_TABLE) == _RUN.encode()[0] - 1  # every code below _RUN is taken, once
_PLANS: dict[str, tuple[tuple[str, str], ...]] = {}  # kind -> the field codes to try
_CONTROL = re.compile("[\x00-\x1f]")
_SEP = "\x00"  # between texts compacted together; no code is NUL (they start at 0x01)
_PREFIX = '{"kind":"'
_STEP = '","step":'


def compact(text: str, run_id: str, *, checked: bool = False) -> str:
    """The stored form of an event's JSON ``text`` of run ``run_id``.

    Args:
        text: the event's JSON.
        run_id: its run.
        checked: ``text`` comes straight from the JSON encoder, so it holds no control
            character; otherwise (a row read from an older file) it is looked at first.
    """
    if not checked and _CONTROL.search(text) is not None:
        return _RAW + text
    kind = ""
    if text.startswith(_PREFIX):
        end = text.find(_STEP, 9)
        if end > 0:
            kind = text[9:end]
            code = _KIND_CODE.get(kind)
            if code is not None:
                text = code + text[end + 9 :]
    fields = _PLANS.get(kind)
    if fields is None:
        # The fields a kind has are fixed: try only the codes whose field name its
        # first event holds. Which codes are tried never changes what expands back.
        fields = tuple(f for f in _FIELD_CODES if f[0].split(":")[0] in text)
        if len(_PLANS) < 256:
            _PLANS[kind] = fields
    for field, code in fields:
        text = text.replace(field, code)
    return text.replace(f'"{run_id}:', '"' + _RUN)


def compact_many(texts: list[str], run_id: str) -> list[str]:
    """:func:`compact` of many events' JSON straight from the encoder, in one pass.

    A code expands to the same text wherever it stands, and NUL is neither a code nor
    possible in an encoder's JSON: the texts are joined by NULs, every replacement is
    made once over the whole, and the result is split again.
    """
    if len(texts) < 4:
        return [compact(text, run_id, checked=True) for text in texts]
    joined = _SEP.join(texts)
    kinds = {text[9 : text.find(_STEP, 9)] for text in texts if text.startswith(_PREFIX)}
    for kind in kinds:
        code = _KIND_CODE.get(kind)
        if code is not None:
            joined = joined.replace(f"{_PREFIX}{kind}{_STEP}", code)
    for field, code in _FIELD_CODES:
        joined = joined.replace(field, code)
    return joined.replace(f'"{run_id}:', '"' + _RUN).split(_SEP)


def expander(run_id: str) -> dict[int, str]:
    """The table :func:`expand` uses for run ``run_id`` (build it once per run)."""
    table = dict(_TABLE)
    table[ord(_RUN)] = f"{run_id}:"
    return table


def expand(stored: str, table: dict[int, str]) -> str:
    """The event JSON :func:`compact` stored as ``stored``."""
    if stored.startswith(_RAW):
        return stored[1:]
    return stored.translate(table)

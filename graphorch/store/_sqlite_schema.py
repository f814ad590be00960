"""The SQLite schema, its migrations, and the checks made before touching a file.

A graphorch database is marked by ``PRAGMA application_id`` and versioned by
``PRAGMA user_version``. Migrations are a list of functions; migration ``i`` takes the
schema from version ``i`` to ``i + 1`` inside one ``BEGIN IMMEDIATE`` transaction, so a
later issue adds a table (tool_calls, approvals) by appending one function.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from graphorch.exceptions import DatabaseError
from graphorch.store._audit import genesis
from graphorch.store._sqlite_worker import BUSY_RETRY_SECONDS, is_busy

if TYPE_CHECKING:
    import sqlite_utils

__all__ = [
    "APPLICATION_ID",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "WAL_PAGES",
    "check_file",
    "key_from_tail",
    "key_tail",
    "open_connection",
]

APPLICATION_ID = 0x67726F63  # "groc"
"""Marks a file as a graphorch database (``PRAGMA application_id``)."""

WAL_PAGES = 64
"""Pages of WAL (256 KB) after which a commit folds the WAL into the database file."""

_HEADER = b"SQLite format 3\x00"
_QUICK_CHECK_MAX_BYTES = 32 * 1024 * 1024  # above this, opening would get slow


def _v1(db: sqlite_utils.Database) -> None:
    """Runs, checkpoints, content-addressed values, and the hash-chained event log."""
    # A run's head (seq, next nodes, time) is its highest checkpoint, not a column
    # here: a step then writes no page of this table unless the status changes.
    db.table("runs").create(
        {
            "run_id": str,
            "graph": str,
            "graph_fingerprint": str,
            "status": str,
            "reason": str,
            "error_node": str,
            "created_us": int,  # microseconds since the epoch, for sorting and filters
            "created_off": int,  # UTC offset in seconds; NULL for a naive datetime
            "updated_us": int,  # last change of this row; the head checkpoint may be later
            "updated_off": int,
            "parent_run": str,
            "forked_from": str,
            "output": bytes,
            "lease_owner": str,
            "lease_epoch": int,
            "lease_expires": float,
        },
        pk="run_id",
        not_null={
            "graph",
            "graph_fingerprint",
            "status",
            "created_us",
            "updated_us",
            "lease_epoch",
        },
        defaults={"lease_epoch": 0},
    )
    # Every list_runs filter is served by an index whose tail is created_us, so
    # "newest first, limit N" reads N index entries instead of sorting.
    db.table("runs").create_index(["created_us"], index_name="runs_by_time")
    db.table("runs").create_index(["status", "created_us"], index_name="runs_by_status")
    db.table("runs").create_index(["graph", "created_us"], index_name="runs_by_graph")
    db.table("runs").create_index(["parent_run", "created_us"], index_name="runs_by_parent")

    # WITHOUT ROWID keyed by (run_id, seq): one B-tree per checkpoint row, no extra
    # index. sqlite-utils cannot express WITHOUT ROWID, hence raw DDL here.
    db.conn.execute(
        """
        CREATE TABLE checkpoints (
            run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            cpid TEXT,              -- NULL when it is the canonical "<run_id>:<seq>"
            parent TEXT,            -- NULL: none; '': "<run_id>:<seq-1>"; else the id
            nodes TEXT NOT NULL,
            next_nodes TEXT NOT NULL,
            status TEXT NOT NULL,
            changed TEXT NOT NULL,
            fields TEXT NOT NULL,   -- {field: value id | inline JSON text}
            meta BLOB NOT NULL,
            created_us INTEGER NOT NULL,
            created_off INTEGER,
            PRIMARY KEY (run_id, seq)
        ) WITHOUT ROWID
        """
    )
    db.conn.execute(
        "CREATE UNIQUE INDEX checkpoints_by_cpid ON checkpoints(cpid) WHERE cpid IS NOT NULL"
    )
    db.conn.execute("CREATE INDEX checkpoints_by_parent ON checkpoints(parent) WHERE parent <> ''")

    db.table("vals").create(
        {
            "id": int,
            "hash": bytes,  # sha256 of a whole value; NULL for append segments
            "prev": int,  # the value this segment extends; NULL for a whole value
            "lvl": int,  # NULL for a whole value, else the segment's merge level
            "cnt": int,  # consecutive segments of this level ending here
            "data": bytes,
        },
        pk="id",
        not_null={"data"},
    )
    db.conn.execute("CREATE UNIQUE INDEX vals_by_hash ON vals(hash) WHERE hash IS NOT NULL")

    # Keyed by (run_id, n), WITHOUT ROWID: a run's events are one contiguous range of
    # one B-tree, and a commit touches one page fewer than a rowid table plus index.
    db.conn.execute(
        """
        CREATE TABLE events (
            run_id TEXT NOT NULL REFERENCES runs(run_id),
            n INTEGER NOT NULL,     -- 0, 1, 2, ... within the run
            data TEXT NOT NULL,     -- the event's JSON, without its run_id
            hash BLOB NOT NULL,     -- sha256(previous hash in this run + data): audit chain
            PRIMARY KEY (run_id, n)
        ) WITHOUT ROWID
        """
    )


def _v2(db: sqlite_utils.Database) -> None:
    """The tool-call journal, and the audit chains' heads."""
    # A rowid table keyed by the idempotency key: an upsert keeps a call's rowid, so
    # rowid order is the order calls were first journaled.
    db.conn.execute(
        """
        CREATE TABLE tool_calls (
            key TEXT PRIMARY KEY,   -- "<run_id>:<seq>:<node>:<index>"
            run_id TEXT NOT NULL REFERENCES runs(run_id),
            seq INTEGER NOT NULL,   -- the checkpoint the calling step started from
            node TEXT NOT NULL,
            idx INTEGER NOT NULL,
            tool TEXT NOT NULL,
            args BLOB NOT NULL,
            status TEXT NOT NULL,   -- started, succeeded, failed
            result BLOB,
            error TEXT,
            error_type TEXT,
            cost REAL NOT NULL,
            started_us INTEGER NOT NULL,
            started_off INTEGER,
            finished_us INTEGER,
            finished_off INTEGER,
            resolved_by TEXT
        )
        """
    )
    db.conn.execute("CREATE INDEX tool_calls_by_run ON tool_calls(run_id, seq)")
    # One row per run, written with its events: how many there are and the last hash,
    # so deleting rows from the end of a log is detected too.
    db.conn.execute(
        """
        CREATE TABLE event_chains (
            run_id TEXT PRIMARY KEY REFERENCES runs(run_id),
            n INTEGER NOT NULL,     -- events in the run's log: the next position
            hash BLOB NOT NULL      -- the last event's hash (the chain start when n = 0)
        ) WITHOUT ROWID
        """
    )
    # An existing log is trusted as it stands (max() picks its row's hash).
    db.conn.execute(
        "INSERT INTO event_chains (run_id, n, hash)"
        " SELECT run_id, max(n) + 1, hash FROM events GROUP BY run_id"
    )
    empty = db.conn.execute(
        "SELECT run_id FROM runs WHERE run_id NOT IN (SELECT run_id FROM event_chains)"
    ).fetchall()
    db.conn.executemany(
        "INSERT INTO event_chains (run_id, n, hash) VALUES (?, 0, ?)",
        [(str(r[0]), genesis(str(r[0]))) for r in empty],
    )


def _v3(db: sqlite_utils.Database) -> None:
    """Approvals: requests for a person's decision, and the decisions."""
    # A rowid table: rowid order breaks ties between requests made at the same time.
    db.conn.execute(
        """
        CREATE TABLE approvals (
            approval_id TEXT PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs(run_id),
            seq INTEGER NOT NULL,
            node TEXT NOT NULL,
            prompt TEXT NOT NULL,
            context BLOB NOT NULL,
            approvers TEXT NOT NULL,    -- JSON array of names
            roles TEXT NOT NULL,        -- JSON array of role names
            requested_us INTEGER NOT NULL,
            requested_off INTEGER,
            status TEXT NOT NULL,       -- pending, approved, rejected, expired
            expires_us INTEGER,
            expires_off INTEGER,
            tool TEXT,
            call_key TEXT,
            args BLOB,
            decided_by TEXT,
            decided_us INTEGER,
            decided_off INTEGER,
            comment TEXT,
            edits BLOB
        )
        """
    )
    # "Pending, oldest first" across all runs, and one run's approvals (also for
    # deleting a run), each read in order straight from an index.
    db.conn.execute("CREATE INDEX approvals_by_status ON approvals(status, requested_us)")
    db.conn.execute("CREATE INDEX approvals_by_run ON approvals(run_id, requested_us)")


_V4_TABLES = """
CREATE TABLE runs (
    rk INTEGER PRIMARY KEY,     -- the run in every other table: an integer, not its id
    run_id TEXT NOT NULL UNIQUE,
    graph TEXT NOT NULL,
    graph_fingerprint TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    error_node TEXT,
    created_us INTEGER NOT NULL,
    created_off INTEGER,
    updated_us INTEGER NOT NULL,
    updated_off INTEGER,
    parent_run TEXT,
    forked_from TEXT,
    output BLOB,
    lease_owner TEXT,
    lease_epoch INTEGER NOT NULL DEFAULT 0,
    lease_expires FLOAT
);
CREATE INDEX runs_by_time ON runs(created_us);
CREATE INDEX runs_by_status ON runs(status, created_us);
CREATE INDEX runs_by_graph ON runs(graph, created_us);
CREATE INDEX runs_by_parent ON runs(parent_run, created_us);
CREATE TABLE shapes (
    id INTEGER PRIMARY KEY,
    nodes TEXT NOT NULL,
    next_nodes TEXT NOT NULL,
    status TEXT NOT NULL,
    changed TEXT NOT NULL,
    UNIQUE (nodes, next_nodes, status, changed)
);
CREATE TABLE checkpoints (
    rk INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    cpid TEXT,              -- NULL when it is the canonical "<run_id>:<seq>"
    parent TEXT,            -- NULL: none; '': "<run_id>:<seq-1>"; else the id
    shape INTEGER NOT NULL, -- shapes.id: nodes, next nodes, status, changed fields
    fields TEXT NOT NULL,   -- {field: value id | inline JSON text}
    meta BLOB NOT NULL,
    created_us INTEGER NOT NULL,
    created_off INTEGER,
    PRIMARY KEY (rk, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX checkpoints_by_cpid ON checkpoints(cpid) WHERE cpid IS NOT NULL;
CREATE INDEX checkpoints_by_parent ON checkpoints(parent) WHERE parent <> '';
CREATE TABLE events (
    rk INTEGER NOT NULL,
    n INTEGER NOT NULL,     -- 0, 1, 2, ... within the run
    data TEXT NOT NULL,     -- the event's JSON without its run_id, compacted
    hash BLOB NOT NULL,     -- sha256(previous hash in this run + JSON): audit chain
    PRIMARY KEY (rk, n)
) WITHOUT ROWID;
CREATE TABLE event_chains (
    rk INTEGER PRIMARY KEY,
    n INTEGER NOT NULL,     -- events in the run's log: the next position
    hash BLOB NOT NULL      -- the last event's hash (the chain start when n = 0)
);
CREATE TABLE tool_calls (
    id INTEGER PRIMARY KEY, -- the order calls were first journaled
    rk INTEGER NOT NULL,
    k TEXT NOT NULL,        -- the key without its "<run_id>:" (see key_tail)
    seq INTEGER NOT NULL,   -- the checkpoint the calling step started from
    node TEXT NOT NULL,
    idx INTEGER NOT NULL,
    tool TEXT NOT NULL,
    args BLOB NOT NULL,
    status TEXT NOT NULL,   -- started, succeeded, failed
    result BLOB,
    error TEXT,
    error_type TEXT,
    cost REAL NOT NULL,
    started_us INTEGER NOT NULL,
    started_off INTEGER,
    finished_us INTEGER,
    finished_off INTEGER,
    resolved_by TEXT
);
CREATE UNIQUE INDEX tool_calls_by_key ON tool_calls(rk, k);
"""


_WHOLE = "\x1f"  # marks a stored call key kept whole


def key_tail(run_id: str, key: str) -> str:
    """How a call's key is stored: without ``"<run_id>:"`` when it starts so (the
    usual case), else whole behind a marker no other stored key starts with."""
    prefix = run_id + ":"
    if key.startswith(prefix) and not key.startswith(_WHOLE, len(prefix)):
        return key[len(prefix) :]
    return _WHOLE + key


def key_from_tail(run_id: str, tail: str) -> str:
    """The key :func:`key_tail` stored as ``tail``."""
    return tail[1:] if tail.startswith(_WHOLE) else f"{run_id}:{tail}"


def _v4(db: sqlite_utils.Database) -> None:
    """Compact rows: runs keyed by an integer in every table, events stored compacted,
    checkpoint shapes (nodes, next nodes, status, changed) stored once, one index for
    the journal instead of two, no foreign keys (every write checks its run)."""
    # Imported here: only a migration needs it.
    from graphorch.store._sqlite_events import compact

    conn = db.conn
    old = ("runs", "checkpoints", "events", "event_chains", "tool_calls")
    marks = ",".join("?" * len(old))
    for (index,) in conn.execute(
        f"SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name IN ({marks})"
        " AND sql IS NOT NULL",
        old,
    ).fetchall():
        conn.execute(f"DROP INDEX {index}")
    # Legacy renames leave the approvals table's reference to runs(run_id) as it is:
    # it names the new runs table once the old one is gone.
    conn.execute("PRAGMA legacy_alter_table = ON")
    for name in old:
        conn.execute(f"ALTER TABLE {name} RENAME TO old_{name}")
    conn.execute("PRAGMA legacy_alter_table = OFF")
    for statement in _V4_TABLES.split(";\n"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(
        "INSERT INTO runs (rk, run_id, graph, graph_fingerprint, status, reason, error_node,"
        " created_us, created_off, updated_us, updated_off, parent_run, forked_from, output,"
        " lease_owner, lease_epoch, lease_expires)"
        " SELECT rowid, run_id, graph, graph_fingerprint, status, reason, error_node,"
        " created_us, created_off, updated_us, updated_off, parent_run, forked_from, output,"
        " lease_owner, lease_epoch, lease_expires FROM old_runs ORDER BY rowid"
    )
    conn.execute(
        "INSERT INTO shapes (nodes, next_nodes, status, changed)"
        " SELECT DISTINCT nodes, next_nodes, status, changed FROM old_checkpoints"
    )
    conn.execute(
        "INSERT INTO checkpoints (rk, seq, cpid, parent, shape, fields, meta, created_us,"
        " created_off) SELECT r.rk, c.seq, c.cpid, c.parent, s.id, c.fields, c.meta,"
        " c.created_us, c.created_off FROM old_checkpoints c JOIN runs r USING (run_id)"
        " JOIN shapes s ON s.nodes = c.nodes AND s.next_nodes = c.next_nodes"
        " AND s.status = c.status AND s.changed = c.changed"
    )
    conn.execute(
        "INSERT INTO event_chains (rk, n, hash) SELECT r.rk, e.n, e.hash"
        " FROM old_event_chains e JOIN runs r USING (run_id)"
    )
    # Rows of a run deleted by hand keep their (unreadable) run id as their key.
    conn.executemany(
        "INSERT INTO events (rk, n, data, hash) VALUES (?, ?, ?, ?)",
        (
            (rk, n, compact(data, run_id) if isinstance(data, str) else data, digest)
            for rk, run_id, n, data, digest in conn.execute(
                "SELECT coalesce(r.rk, e.run_id), e.run_id, e.n, e.data, e.hash"
                " FROM old_events e LEFT JOIN runs r USING (run_id)"
            ).fetchall()
        ),
    )
    conn.executemany(
        "INSERT INTO tool_calls (rk, k, seq, node, idx, tool, args, status, result, error,"
        " error_type, cost, started_us, started_off, finished_us, finished_off, resolved_by)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            (row[0], key_tail(row[1], row[2]), *row[3:])
            for row in conn.execute(
                "SELECT r.rk, t.run_id, t.key, t.seq, t.node, t.idx, t.tool, t.args, t.status,"
                " t.result, t.error, t.error_type, t.cost, t.started_us, t.started_off,"
                " t.finished_us, t.finished_off, t.resolved_by"
                " FROM old_tool_calls t JOIN runs r USING (run_id) ORDER BY t.rowid"
            ).fetchall()
        ),
    )
    for name in old:
        conn.execute(f"DROP TABLE old_{name}")


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1, _v2, _v3, _v4]
"""``MIGRATIONS[i]`` upgrades schema version ``i`` to ``i + 1``."""

SCHEMA_VERSION = len(MIGRATIONS)


def _fail(path: str, what: str) -> DatabaseError:
    return DatabaseError(
        f"{path} {what}; it was not changed. Point SQLiteStore(path) or GRAPHORCH_DB at "
        "a graphorch database or at a new file."
    )


def check_file(path: str, *, quick_check: bool = True) -> bool:
    """Refuse a file that is not a usable graphorch database, without writing to it.

    Returns:
        True when the file is new (missing, empty, or an SQLite file with no tables).

    Raises:
        DatabaseError: not SQLite, corrupt, someone else's database, or too new.
    """
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        return True
    if size == 0:
        return True
    with open(path, "rb") as f:
        header = f.read(100)
    if not header.startswith(_HEADER):
        raise _fail(path, "is not a graphorch database (not even an SQLite file)")
    if len(header) < 100:
        raise _fail(path, "is corrupt (truncated SQLite header)")
    # Without a -wal beside it the main file is the whole truth: read it immutable so
    # not even a -shm/-wal file appears next to a file we may refuse.
    immutable = not os.path.exists(path + "-wal")
    uri = f"file:{quote(os.path.abspath(path))}?mode=ro" + ("&immutable=1" if immutable else "")
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    try:
        app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        tables = {
            str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if app_id != APPLICATION_ID:
            if app_id == 0 and version == 0 and not tables:
                return True
            raise _fail(path, "is an SQLite database but not a graphorch one")
        if version > SCHEMA_VERSION:
            raise DatabaseError(
                f"{path} was written by a newer graphorch (schema version {version}; this "
                f"graphorch reads up to {SCHEMA_VERSION}); upgrade graphorch "
                "(pip install -U graphorch). The file was not changed."
            )
        wanted = {"runs", "checkpoints", "vals", "events"}
        if version >= 2:
            wanted |= {"tool_calls", "event_chains"}
        if version >= 3:
            wanted |= {"approvals"}
        if version >= 4:
            wanted |= {"shapes"}
        missing = wanted - tables
        if version >= 1 and missing:
            raise _fail(path, f"is corrupt (missing tables {sorted(missing)})")
        if quick_check and size <= _QUICK_CHECK_MAX_BYTES:
            result = [str(r[0]) for r in conn.execute("PRAGMA quick_check")]
            if result != ["ok"]:
                raise _fail(path, f"is corrupt ({'; '.join(result[:3])})")
        return False
    except sqlite3.DatabaseError as exc:
        raise _fail(path, f"is corrupt ({exc})") from None
    finally:
        conn.close()


def _retry(fn: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + BUSY_RETRY_SECONDS
    delay = 0.001
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


def open_connection(
    path: str,
    *,
    durability: Literal["normal", "full"],
    busy_timeout: float,
    writer: bool,
) -> sqlite3.Connection:
    """A configured connection; the writer's also creates or migrates the schema.

    Call :func:`check_file` first: this function writes to the file.
    """
    if writer:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=busy_timeout
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        if writer:
            mode = _retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            if str(mode).lower() != "wal":
                raise DatabaseError(f"{path}: could not switch to WAL mode (got {mode!r})")
        conn.execute(f"PRAGMA synchronous = {'FULL' if durability == 'full' else 'NORMAL'}")
        # No foreign keys: a version 4 file has none (each write checks its run), and
        # the version 4 migration renames tables that older versions referenced.
        # The WAL is folded into the file every WAL_PAGES pages (SQLite's default is
        # 1,000: ~4 MB of WAL beside a small file), in the writer thread as part of a
        # commit, and a WAL grown past that by a big transaction is cut back to it.
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_PAGES}")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_PAGES * 4096}")
        # Savepoints (one per job when a group commit is run again after a failure)
        # keep a sub-journal; in memory it costs a copy, in a temp file syscalls.
        conn.execute("PRAGMA temp_store = MEMORY")
        if writer:
            _migrate(conn, path)
        else:
            conn.execute("PRAGMA query_only = ON")
        return conn
    except BaseException:
        conn.close()
        raise


def _migrate(conn: sqlite3.Connection, path: str) -> None:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version == SCHEMA_VERSION:
        return
    _retry(lambda: conn.execute("BEGIN IMMEDIATE"))
    try:
        # Another process may have migrated while we waited for the lock.
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise DatabaseError(
                f"{path} was upgraded by a newer graphorch (schema version {version}); "
                "upgrade graphorch (pip install -U graphorch)"
            )
        # Imported here: sqlite_utils costs ~0.15 s to import, and only a new or
        # outdated file needs it; opening a current one must stay fast for resume.
        import sqlite_utils

        db = sqlite_utils.Database(conn, execute_plugins=False, recursive_triggers=False)
        for step in MIGRATIONS[version:]:
            step(db)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise

"""The small document set the research example searches (bundled, no network).

Eight short notes on running agent workflows reliably. Each sentence is a passage the
fact-check can cite.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DOCUMENTS", "Document", "by_id"]


@dataclass(frozen=True)
class Document:
    """One bundled document: an id to cite, a title and its text."""

    doc_id: str
    title: str
    text: str


DOCUMENTS: tuple[Document, ...] = (
    Document(
        "checkpointing",
        "Checkpointing every step",
        "A durable workflow engine writes a checkpoint after every step. "
        "The checkpoint holds the state, the node that ran and the nodes that run next. "
        "After a crash the run resumes from its last committed checkpoint, so no committed "
        "step runs again. "
        "Committing the checkpoint and the step's events in one transaction means a crash "
        "at any instant leaves the run at a consistent point.",
    ),
    Document(
        "idempotency",
        "Idempotency keys and the tool-call journal",
        "Side effects such as payments or deployments must not be repeated after a crash. "
        "Each tool call gets an idempotency key made of the run, the checkpoint, the node "
        "and the call's index. "
        "The journal records the result of every call under its key. "
        "On resume, a call whose result is in the journal is replayed from the journal "
        "instead of being executed again. "
        "A call that started but never recorded a result is retried only when the tool is "
        "idempotent; otherwise a person must decide what happened.",
    ),
    Document(
        "delivery",
        "Delivery guarantees in distributed systems",
        "Networks deliver a message at most once or at least once. "
        "No network protocol can guarantee exactly-once delivery on its own, because a "
        "sender cannot tell a lost request from a lost reply. "
        "Effectively-once processing is built on top: at-least-once retries combined with "
        "deduplication by an idempotency key.",
    ),
    Document(
        "sqlite-wal",
        "SQLite in write-ahead-log mode",
        "In WAL mode SQLite lets readers continue while a single writer appends to the log. "
        "Only one writer may hold the write lock at a time; other writers wait for the busy "
        "timeout. "
        "Grouping many small commits into one transaction raises the number of commits per "
        "second on slow disks.",
    ),
    Document(
        "human-approval",
        "Human approval in agent workflows",
        "Destructive actions such as deploying a service should wait for a person. "
        "The run pauses in a waiting state and the process may exit while it waits. "
        "Only the allowed approvers may decide, and every decision is written to the audit "
        "log. "
        "After approval the run resumes and the approved action runs exactly once.",
    ),
    Document(
        "backtracking",
        "Backtracking and forking runs",
        "A fact-check that finds an unsupported claim can send the run back to planning. "
        "Backtracking keeps the history: the earlier steps stay in the log. "
        "Forking starts a new branch from an earlier checkpoint, optionally with edited "
        "state, and leaves the original run intact.",
    ),
    Document(
        "bm25",
        "Ranking documents with BM25",
        "BM25 ranks documents by the query terms they contain. "
        "Rare terms weigh more through the inverse document frequency. "
        "Term frequency saturates, so repeating a word many times helps less and less. "
        "Long documents are normalised by their length relative to the average length.",
    ),
    Document(
        "guardrails",
        "Guardrails for tool calls",
        "Each agent role may call only the tools on its allowlist. "
        "Read-only mode denies destructive tools or routes them to a person for approval. "
        "Rate limits and budgets cap how many tool calls a run may make. "
        "A denied call is a typed error the node can handle, and it is recorded in the "
        "audit log.",
    ),
)


def by_id(doc_id: str) -> Document:
    """The document with this id. Raises KeyError naming the known ids."""
    for doc in DOCUMENTS:
        if doc.doc_id == doc_id:
            return doc
    raise KeyError(f"no document {doc_id!r}; known: {', '.join(d.doc_id for d in DOCUMENTS)}")

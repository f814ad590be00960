"""The example graphs the demo, the docs and the notebooks use.

- :mod:`graphorch.examples.support`: a triage plan node routes tickets to a billing or
  a technical triage agent (delegation; each agent only its own tools).
- :mod:`graphorch.examples.research`: BM25 search and retrieval over bundled documents,
  a fact-check that backtracks to planning, then a draft with citations.
- :mod:`graphorch.examples.devops`: read-only until a person approves, then
  ``deploy_service`` runs exactly once.
- :mod:`graphorch.examples.quickstart`: the smallest useful graph.

Each of the three seed examples exposes ``graph``, ``tools()``, ``guardrails()``,
``example_input()`` and ``run_demo(store_path, progress=...)``.
"""

EXAMPLES: dict[str, str] = {
    "support": "graphorch.examples.support:graph",
    "research": "graphorch.examples.research:graph",
    "devops": "graphorch.examples.devops:graph",
}
"""The seed examples by name, as ``module:attribute`` of their graph."""

__all__ = ["EXAMPLES"]

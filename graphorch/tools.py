"""Tools: registered callables with validated arguments and declared behaviour.

A :class:`ToolRegistry` holds tools. Each :class:`Tool` knows its arguments' pydantic
schema (derived from type hints unless given), its result type, and its metadata:
``destructive``, ``idempotent``, ``timeout``, ``retry``, ``rate_limit`` and ``cost``.
The runtime calls tools; node code never calls them directly but through
``ctx.tools``, so every call is validated, policed, journaled and audited.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal, get_type_hints, overload

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model

from graphorch._record import Record

from .exceptions import DefinitionError
from .nodes import Retry, is_async_callable

__all__ = ["RateLimit", "Tool", "ToolContext", "ToolRegistry"]


class RateLimit(Record):
    """At most ``calls`` calls per ``per`` seconds.

    Callers over the limit wait for a slot (at most ``max_wait`` seconds) rather than
    fail. ``scope`` says what the limit counts: calls to this tool across all runs
    (``"tool"``), calls to this tool within one run (``"run"``), or, in a policy's
    ``rate_limits``, every tool call in the process (``"global"``).
    """

    calls: int
    per: float = 1.0
    scope: Literal["tool", "run", "global"] = "tool"
    max_wait: float = 30.0

    def __post_init__(self) -> None:
        if not isinstance(self.calls, int) or self.calls < 1:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise DefinitionError(f"RateLimit(calls=...) must be an int >= 1, got {self.calls!r}")
        if not self.per > 0:
            raise DefinitionError(f"RateLimit(per=...) must be positive seconds, got {self.per!r}")
        if self.scope not in ("tool", "run", "global"):
            raise DefinitionError("RateLimit(scope=...) must be 'tool', 'run' or 'global'")


class ToolContext:
    """What a tool function may know about the call (declare a ``ctx: ToolContext``).

    Attributes:
        run_id: the run making the call.
        node: the node making it.
        tool: the tool's name.
        idempotency_key: stable across retries and resumes; pass it to APIs that
            accept one (payments, ticketing) so a repeated call has no second effect.
        attempt: 1 on the first try.
        deps: the run's injected dependencies.
    """

    __slots__ = ("attempt", "deps", "idempotency_key", "node", "run_id", "tool")

    def __init__(
        self, *, run_id: str, node: str, tool: str, idempotency_key: str, attempt: int, deps: Any
    ) -> None:
        self.run_id = run_id
        self.node = node
        self.tool = tool
        self.idempotency_key = idempotency_key
        self.attempt = attempt
        self.deps = deps

    def __repr__(self) -> str:
        return f"<ToolContext {self.tool} key={self.idempotency_key} attempt={self.attempt}>"


_NO_RESULT = inspect.Signature.empty


class Tool(Record):
    """A registered tool. Build with :meth:`ToolRegistry.tool`.

    Attributes:
        name: unique within its registry.
        fn: the callable (async or sync; sync ones run in a worker thread).
        args_model: the pydantic model its arguments are validated against.
        description: for people and for models choosing tools.
        destructive: changes the world (denied in read-only mode).
        idempotent: safe to repeat: a call interrupted by a crash is retried on resume.
        timeout: seconds one attempt may take.
        retry: retry policy for failures.
        rate_limit: calls allowed per period.
        cost: the cost of one call, counted against the run's budget.
    """

    # two graphs (tools) are the same only if they are the same object
    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    name: str
    fn: Callable[..., Any]
    args_model: type[BaseModel]
    result_adapter: TypeAdapter[Any] | None
    description: str
    destructive: bool = False
    idempotent: bool = False
    timeout: float | None = None
    retry: Retry | None = None
    rate_limit: RateLimit | None = None
    cost: float = 0.0
    context_param: str | None = None
    is_async: bool = True

    def validate_args(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Validate arguments; raises pydantic's ValidationError."""
        # the validated fields, in order (``model_fields`` costs a deprecation check
        # per access, a measurable share of a tool call)
        return dict(self.args_model.model_validate(dict(args)).__dict__)

    def json_schema(self) -> dict[str, Any]:
        """The JSON schema of the arguments (what a model is shown)."""
        return self.args_model.model_json_schema()

    def describe_error(self, err: ValidationError) -> str:
        """One line per bad argument: its name, what was expected, what came."""
        parts: list[str] = []
        for e in err.errors():
            loc = ".".join(str(x) for x in e["loc"]) or "(arguments)"
            parts.append(f"{loc}: {e['msg']} (got {e.get('input')!r:.60})")
        return "; ".join(parts)


def _args_model(name: str, fn: Callable[..., Any]) -> tuple[type[BaseModel], str | None]:
    sig = inspect.signature(fn)
    try:
        hints = get_type_hints(fn)
    except Exception:  # unresolvable forward references: fall back to raw annotations
        hints = {}
    fields: dict[str, Any] = {}
    context_param: str | None = None
    for pname, param in sig.parameters.items():
        annotation = hints.get(pname, param.annotation)
        if annotation is ToolContext or (pname == "ctx" and annotation is _NO_RESULT):
            context_param = pname
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise DefinitionError(
                f"tool {name!r}: *args/**kwargs cannot be validated; give the tool named "
                f"parameters or pass args=YourModel"
            )
        if annotation is _NO_RESULT:
            annotation = Any
        default = ... if param.default is param.empty else param.default
        fields[pname] = (annotation, default)
    model = create_model(  # pyright: ignore[reportCallIssue, reportUnknownVariableType]
        f"{name}_args",
        __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=False),
        **fields,
    )
    return model, context_param  # pyright: ignore[reportUnknownVariableType]


def _context_param(fn: Callable[..., Any]) -> str | None:
    """The parameter that receives the ToolContext, if the tool declares one."""
    try:
        hints = get_type_hints(fn)
    except Exception:
        hints = {}
    for pname, param in inspect.signature(fn).parameters.items():
        annotation = hints.get(pname, param.annotation)
        if annotation is ToolContext or (pname == "ctx" and annotation is _NO_RESULT):
            return pname
    return None


class ToolRegistry:
    """The tools a runtime may call, by name.

    Example::

        tools = go.ToolRegistry()

        @tools.tool(idempotent=True, rate_limit=go.RateLimit(10, per=1))
        async def search(query: str, limit: int = 5) -> list[str]: ...
    """

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def __repr__(self) -> str:
        return f"<ToolRegistry {sorted(self._tools)}>"

    def get(self, name: str) -> Tool | None:
        """The tool called ``name``, or None."""
        return self._tools.get(name)

    def names(self) -> list[str]:
        """Every tool's name, sorted."""
        return sorted(self._tools)

    @overload
    def tool(self, fn: Callable[..., Any], /) -> Tool: ...
    @overload
    def tool(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        args: type[BaseModel] | None = None,
        description: str | None = None,
        destructive: bool = False,
        idempotent: bool = False,
        timeout: float | None = None,
        retry: Retry | int | None = None,
        rate_limit: RateLimit | None = None,
        cost: float = 0.0,
    ) -> Callable[[Callable[..., Any]], Tool]: ...
    def tool(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        args: type[BaseModel] | None = None,
        description: str | None = None,
        destructive: bool = False,
        idempotent: bool = False,
        timeout: float | None = None,
        retry: Retry | int | None = None,
        rate_limit: RateLimit | None = None,
        cost: float = 0.0,
    ) -> Tool | Callable[[Callable[..., Any]], Tool]:
        """Register a tool; usable as ``@tools.tool`` or ``@tools.tool(...)``.

        Args:
            name: defaults to the function's name.
            args: a pydantic model overriding the schema derived from type hints.
            description: defaults to the function's docstring.
            destructive: the tool changes the world (denied in read-only mode).
            idempotent: safe to repeat after a crash interrupted it.
            timeout: seconds one attempt may take.
            retry: attempts (int) or a :class:`Retry`.
            rate_limit: calls per period.
            cost: the cost of one call, counted against budgets.

        Raises:
            DefinitionError: bad metadata, a duplicate name, or unvalidatable parameters.
        """

        def register(f: Callable[..., Any]) -> Tool:
            return self.add(
                f,
                name=name,
                args=args,
                description=description,
                destructive=destructive,
                idempotent=idempotent,
                timeout=timeout,
                retry=retry,
                rate_limit=rate_limit,
                cost=cost,
            )

        if fn is not None:
            return register(fn)
        return register

    def add(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        args: type[BaseModel] | None = None,
        description: str | None = None,
        destructive: bool = False,
        idempotent: bool = False,
        timeout: float | None = None,
        retry: Retry | int | None = None,
        rate_limit: RateLimit | None = None,
        cost: float = 0.0,
    ) -> Tool:
        """Register ``fn`` as a tool (the non-decorator form of :meth:`tool`)."""
        if not callable(fn):
            raise DefinitionError(f"a tool must be callable, got {type(fn).__name__}")
        tool_name = name or getattr(fn, "__name__", None)
        if not isinstance(tool_name, str) or not tool_name or tool_name == "<lambda>":
            raise DefinitionError("give the tool a name: tools.tool(name='...')")
        if tool_name in self._tools:
            raise DefinitionError(f"tool {tool_name!r} is registered twice")
        if timeout is not None and not (isinstance(timeout, int | float) and timeout > 0):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise DefinitionError(f"tool {tool_name!r}: timeout= must be positive seconds")
        if not isinstance(cost, int | float) or cost < 0:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise DefinitionError(f"tool {tool_name!r}: cost= must be a number >= 0")
        if rate_limit is not None and not isinstance(rate_limit, RateLimit):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise DefinitionError(f"tool {tool_name!r}: rate_limit= takes go.RateLimit(...)")
        if isinstance(retry, bool) or (isinstance(retry, int) and retry < 1):
            raise DefinitionError(f"tool {tool_name!r}: retry= takes an int >= 1 or go.Retry")
        retry_policy = Retry(attempts=retry) if isinstance(retry, int) else retry
        if args is not None:
            if not (isinstance(args, type) and issubclass(args, BaseModel)):  # pyright: ignore[reportUnnecessaryIsInstance]
                raise DefinitionError(f"tool {tool_name!r}: args= must be a pydantic model class")
            model: type[BaseModel] = args
            context_param = _context_param(fn)
        else:
            model, context_param = _args_model(tool_name, fn)
        try:
            returns = get_type_hints(fn).get("return", _NO_RESULT)
        except Exception:
            returns = _NO_RESULT
        adapter = None if returns in (_NO_RESULT, Any) else TypeAdapter(returns)
        doc = description if description is not None else inspect.getdoc(fn) or ""
        tool = Tool(
            name=tool_name,
            fn=fn,
            args_model=model,
            result_adapter=adapter,
            description=doc.strip().split("\n\n")[0],
            destructive=bool(destructive),
            idempotent=bool(idempotent),
            timeout=timeout,
            retry=retry_policy,
            rate_limit=rate_limit,
            cost=float(cost),
            context_param=context_param,
            is_async=is_async_callable(fn),
        )
        self._tools[tool_name] = tool
        return tool

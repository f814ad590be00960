"""Chat models: the :class:`ChatModel` protocol, a scripted model and provider adapters.

The adapters import their SDK only when constructed, so importing this package never
needs ``openai`` or ``anthropic``; install them with ``pip install 'graphorch[openai]'``
or ``'graphorch[anthropic]'``.
"""

from typing import TYPE_CHECKING, Any

from .base import (
    ChatModel,
    Completion,
    Message,
    MissingDependencyError,
    ModelError,
    ModelOutputError,
    ModelRateLimitError,
    ModelRefusalError,
    ModelTimeoutError,
    ModelUnavailableError,
    Role,
    Usage,
    validate_output,
)

if TYPE_CHECKING:
    from .anthropic import AnthropicModel
    from .openai import OpenAIModel
    from .scripted import ScriptedCall, ScriptedModel


def __getattr__(name: str) -> Any:
    # the adapters (and their HTTP helpers) load on first use, keeping `import graphorch` fast
    if name in ("ScriptedModel", "ScriptedCall"):
        from . import scripted

        return getattr(scripted, name)
    if name == "OpenAIModel":
        from .openai import OpenAIModel

        return OpenAIModel
    if name == "AnthropicModel":
        from .anthropic import AnthropicModel

        return AnthropicModel
    raise AttributeError(f"module 'graphorch.models' has no attribute {name!r}")


__all__ = [
    "AnthropicModel",
    "ChatModel",
    "Completion",
    "Message",
    "MissingDependencyError",
    "ModelError",
    "ModelOutputError",
    "ModelRateLimitError",
    "ModelRefusalError",
    "ModelTimeoutError",
    "ModelUnavailableError",
    "OpenAIModel",
    "Role",
    "ScriptedCall",
    "ScriptedModel",
    "Usage",
    "validate_output",
]

"""Chat models: the :class:`ChatModel` protocol, a scripted model and provider adapters.

The adapters import their SDK only when constructed, so importing this package never
needs ``openai`` or ``anthropic``; install them with ``pip install 'graphorch[openai]'``
or ``'graphorch[anthropic]'``.
"""

from .anthropic import AnthropicModel
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
from .openai import OpenAIModel
from .scripted import ScriptedCall, ScriptedModel

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

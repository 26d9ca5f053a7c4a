"""Provider adapters, by provider kind."""

from __future__ import annotations

from providers.adapters.anthropic import AnthropicAdapter
from providers.adapters.base import Adapter, ErrorKind, Relay, Target, UpstreamError, connection_error
from providers.adapters.gemini import GeminiAdapter
from providers.adapters.openai import AzureOpenAIAdapter, OpenAIAdapter, OpenAIPlatformAdapter
from providers.adapters.simulator import SimulatorAdapter
from providers.models import Provider

ADAPTERS: dict[str, Adapter] = {
    Provider.Kind.OPENAI: OpenAIPlatformAdapter(),
    Provider.Kind.OPENAI_COMPATIBLE: OpenAIAdapter(),
    Provider.Kind.AZURE_OPENAI: AzureOpenAIAdapter(),
    Provider.Kind.ANTHROPIC: AnthropicAdapter(),
    Provider.Kind.GEMINI: GeminiAdapter(),
    Provider.Kind.SIMULATOR: SimulatorAdapter(),
}


def adapter_for(kind: str) -> Adapter:
    return ADAPTERS[kind]


__all__ = ["ADAPTERS", "Adapter", "ErrorKind", "Relay", "Target", "UpstreamError", "adapter_for", "connection_error"]

"""OneFlow.AI: an OpenAI- and Anthropic-compatible AI gateway."""

from oneflow.celery import app as celery_app

__all__ = ["celery_app"]

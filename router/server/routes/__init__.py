"""The proxy's routes, one module per concern."""

from router.server.routes import chat, feedback, health, metrics, models, policy

__all__ = ["chat", "feedback", "health", "metrics", "models", "policy"]

"""The OpenAI-compatible proxy: `create_app(ServerSettings(...))`, served by `router serve`."""

from router.server.app import app_from_environment, create_app
from router.server.settings import ServerSettings

__all__ = ["ServerSettings", "app_from_environment", "create_app"]

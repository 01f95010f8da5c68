"""Difficulty-aware LLM query router: the proxy, backends, ledger and CLI."""

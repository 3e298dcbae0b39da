"""Runnable examples of longpoll: `python -m examples.<name>` from the repository root."""

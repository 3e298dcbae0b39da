"""Add-ons: hooks into a manager's start, publish and shutdown."""

from longpoll.addons.base import AddOn

__all__ = ["AddOn"]

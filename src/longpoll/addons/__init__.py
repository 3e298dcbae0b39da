"""Add-ons: hooks into a manager's start, publish, delete and shutdown.

`AddOn` is the base class with no-op hooks; `FilePersistor` keeps events in a file
across restarts.
"""

from longpoll.addons.base import AddOn
from longpoll.addons.file import FilePersistor, FileStats

__all__ = ["AddOn", "FilePersistor", "FileStats"]

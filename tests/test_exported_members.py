"""`longpoll.__all__` names exactly what the package exports, in order."""

from __future__ import annotations

import types

import longpoll


def test_all_imports_are_exported() -> None:
    included_private_members = ["__version__"]
    # Submodules (`longpoll.client`, ...) become attributes once imported: not exports.
    exported = (
        member
        for member, value in vars(longpoll).items()
        if not isinstance(value, types.ModuleType)
        and (not member.startswith("_") or member in included_private_members)
    )
    assert longpoll.__all__ == sorted(exported)

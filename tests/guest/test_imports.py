"""The guest runs inside instances with nothing but the standard library (the .importlinter
contract names our packages and the big third-party ones; this covers every other)."""

from __future__ import annotations

import sys

import grimp


def test_the_guest_imports_only_the_standard_library_and_itself() -> None:
    graph = grimp.build_graph("forkyard", include_external_packages=True)
    outside = {
        imported
        for module in graph.find_children("forkyard.guest") | {"forkyard.guest"}
        for imported in graph.find_modules_directly_imported_by(module)
        if not imported.startswith("forkyard.guest")
    }
    assert {m for m in outside if m.split(".")[0] not in sys.stdlib_module_names} == set()

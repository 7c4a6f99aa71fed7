"""Which language servers this instance's image offers (op `lsp_servers`).

The table names servers we know how to start over stdio; which of them the image has is found
here, on the instance's PATH, every time: an image built with gopls or rust-analyzer offers them
without a change on our side. Answer: {"servers": [{"language", "name", "argv", "path"}]}, one
per language (the first server of the table found for it).
"""

from __future__ import annotations

import os

from .execution import BASE_ENV

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# (language, server name, argv that speaks LSP on stdin/stdout), preferred first per language.
KNOWN_SERVERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("python", "pylsp", ("pylsp",)),
    ("python", "pyright", ("pyright-langserver", "--stdio")),
    ("python", "jedi-language-server", ("jedi-language-server",)),
    ("typescript", "typescript-language-server", ("typescript-language-server", "--stdio")),
    ("javascript", "typescript-language-server", ("typescript-language-server", "--stdio")),
    ("go", "gopls", ("gopls",)),
    ("rust", "rust-analyzer", ("rust-analyzer",)),
    ("c", "clangd", ("clangd",)),
    ("cpp", "clangd", ("clangd",)),
    ("bash", "bash-language-server", ("bash-language-server", "start")),
    ("lua", "lua-language-server", ("lua-language-server",)),
)


def _which(name: str, path: str) -> str | None:
    for directory in path.split(os.pathsep):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def do_lsp_servers(req: dict[str, Any]) -> dict[str, Any]:
    path = BASE_ENV["PATH"]
    found: dict[str, dict[str, Any]] = {}
    for language, name, argv in KNOWN_SERVERS:
        if language in found:
            continue
        where = _which(argv[0], path)
        if where is not None:
            found[language] = {
                "language": language,
                "name": name,
                "argv": list(argv),
                "path": where,
            }
    return {"servers": list(found.values())}

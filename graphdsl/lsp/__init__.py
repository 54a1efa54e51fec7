"""`graphdsl lsp`: a language server for .cnn specs (diagnostics as you type, hover with shapes and costs,
go to definition, completion, document symbols, formatting). See docs/editors.md.

The analysis (`graphdsl.lsp.analysis`, `graphdsl.lsp.completion`) is plain Python; only the protocol layer
(`graphdsl.lsp.server`) needs pygls, the `[lsp]` extra: `pip install 'graphdsl[lsp]'`.
"""

from __future__ import annotations

MISSING = ("the language server needs pygls and lsprotocol: pip install 'graphdsl[lsp]' "
           "(pygls==2.1.1, lsprotocol==2025.0.0)")


class ServerUnavailable(RuntimeError):
    """pygls is not installed."""


def serve(stdin=None, stdout=None) -> None:
    """Serve LSP over stdin/stdout (binary streams; the process's own by default) until the client exits.
    Raises ServerUnavailable (with the install line) where pygls is missing."""
    try:
        from .server import serve as run
    except ImportError as e:
        if e.name and e.name.split(".")[0] in ("pygls", "lsprotocol", "cattrs", "attrs"):
            raise ServerUnavailable(MISSING) from e
        raise
    run(stdin, stdout)


__all__ = ["serve", "ServerUnavailable"]

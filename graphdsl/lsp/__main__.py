"""`python -m graphdsl.lsp`: the language server on stdin/stdout."""

import sys

from . import ServerUnavailable, serve

try:
    serve()
except ServerUnavailable as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)

"""graphdsl: a declarative language and compiler for convolutional network architectures."""

from .api import Layer, Network, check, compile, load
from .diagnostics import Diagnostic, Span, SpecError
from .ops import REGISTRY, Op, register
from .plugins import load_plugins

__all__ = ["load", "compile", "check", "Network", "Layer", "Diagnostic", "SpecError", "Span", "Op", "REGISTRY",
           "register", "load_plugins"]
__version__ = "0.1.0"

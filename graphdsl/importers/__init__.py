"""`graphdsl import`: existing networks as readable, parameterised specs.

A front end turns a source into a `LayerGraph` (ir.py): a flat, typed list of layers in graphdsl's
operator vocabulary, each with its arguments, the module path its weights live under, its inputs, its
output shape and the modules that enclose it. The shared back end (lift.py) finds the repeated structure
in that graph — one block per kind of module with its varying constants as parameters, `* n` for runs of
identical calls, `shortcut if` / `residual if` for parts present in some instances only — and builds the
syntax tree that graphdsl/printer.py prints.

Front ends: torch.fx (fx.py) for `package.module:callable` and `file.py:Class`. ONNX, Caffe and Darknet
front ends produce the same LayerGraph (their layers carry no enclosing modules, `scopes` is empty).
"""

from .ir import ImportFailure, Layer, LayerGraph, Scope

__all__ = ["ImportFailure", "Layer", "LayerGraph", "Scope"]

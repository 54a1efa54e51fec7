"""The torch.fx front end: an nn.Module traced into a LayerGraph.

`symbolic_trace` runs the module's `forward` on a proxy, keeping the standard layers (Conv2d,
BatchNorm2d, ReLU, ...) as leaves and tracing through every other module, so each layer keeps the
path of its module (`layer1.0.conv1`) and the stack of modules around it (`layer1` a Sequential,
`layer1.0` a Bottleneck). Shapes come from one forward pass on a zero input (ShapeProp). Patterns of
several nodes become one layer: ShuffleNet's channel shuffle (view, transpose, view), the parts of a
`chunk`/`split` of channels, a parameter times a tensor (ConvNeXt's layer scale). A model whose modules
with weights run in training mode only (auxiliary heads) is traced in training mode too: the outputs
it adds are training outputs.

Loading `package.module:callable` or `file.py:Name` imports that code and runs it: it is the user's
code, named explicitly on the command line.
"""

from __future__ import annotations

import importlib
import importlib.util
import operator
import re
import sys
from pathlib import Path
from typing import NamedTuple

from .ir import INPUT, ImportFailure, Layer, LayerGraph, Scope

SUPPORTED_MODULES = ("Conv2d", "BatchNorm2d", "BatchNorm1d", "Linear", "ReLU", "ReLU6", "LeakyReLU", "ELU", "GELU",
                     "SiLU", "Sigmoid", "Tanh", "Hardswish", "Hardsigmoid", "MaxPool2d", "AvgPool2d",
                     "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "Dropout", "Flatten", "Identity",
                     "LocalResponseNorm", "Softmax", "LayerNorm", "ChannelShuffle")
TORCHVISION_MODULES = ("StochasticDepth", "Permute", "LayerNorm2d")  # torchvision.ops, ConvNeXt's LayerNorm2d
SUPPORTED_FUNCTIONS = ("+ / torch.add", "* / torch.mul", "parameter * x (a layer scale)", "torch.cat(xs, 1)",
                       "torch.flatten(x, 1)", "x.view(x.size(0), -1)", "F.relu", "F.relu6", "torch.sigmoid",
                       "F.hardswish", "F.adaptive_avg_pool2d", "F.max_pool2d", "F.avg_pool2d", "F.dropout",
                       "x.mean([2, 3])", "x.permute(0, 2, 3, 1) and back", "x.chunk(n, dim=1)",
                       "x.split(sizes, dim=1)", "the channel shuffle: view, transpose(1, 2), view",
                       "F.channel_shuffle")


def load_module(source: str, kwargs: dict):
    """The nn.Module that `package.module:callable` or `path/file.py:Name` builds with `kwargs`. This
    imports and runs that code."""
    import torch.nn as nn

    target, sep, attr = source.rpartition(":")
    if not sep or not target or not attr or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", attr):
        raise ImportFailure(f"`{source}` names no callable", "write `package.module:callable` "
                            "(torchvision.models:resnet50) or `path/to/file.py:ClassName`")
    try:
        if target.endswith(".py"):
            path = Path(target)
            if not path.is_file():
                raise ImportFailure(f"`{target}` is not a file", "give the path of a Python file")
            spec = importlib.util.spec_from_file_location(f"graphdsl_import_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except ImportFailure:
        raise
    except Exception as e:  # noqa: BLE001 - the user's module failed to import: say so, no traceback
        raise ImportFailure(f"cannot import `{target}`: {type(e).__name__}: {e}",
                            "check the module name (it must be importable here) or the file") from None
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ImportFailure(f"`{target}` has no `{attr}`", "name a function or class it defines")
    if not callable(obj):
        raise ImportFailure(f"`{source}` is not callable", "name a function or class that builds an nn.Module")
    try:
        built = obj(**kwargs)
    except Exception as e:  # noqa: BLE001 - the user's constructor failed
        raise ImportFailure(f"`{source}({_kwargs_text(kwargs)})` failed: {type(e).__name__}: {e}",
                            "check the keyword arguments") from None
    if not isinstance(built, nn.Module):
        raise ImportFailure(f"`{source}` returned a {type(built).__name__}, not an nn.Module",
                            "name a function or class that builds an nn.Module")
    return built


def _kwargs_text(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def trace(model, input_shape: tuple[int, ...], name: str, source: str = "") -> LayerGraph:
    """The LayerGraph of `model` (put in eval mode) for inputs of `input_shape` (without the batch).

    Modules that hold weights but do not run in eval mode (GoogLeNet's and Inception-v3's auxiliary
    heads) are looked for in a second trace in training mode: when it runs them all and returns the
    eval outputs and more, the extra ones are `graph.training_outputs`."""
    original = dict(model.named_modules())
    graph = _layers(_traced(model, input_shape, training=False), input_shape, name, source)
    idle = _idle(graph, original)
    if idle:
        trained = _training_graph(model, input_shape, name, source, graph, original)
        if trained is not None:
            return trained
        shown = ", ".join(f"`{p}`" for p in idle[:5]) + (f" and {len(idle) - 5} more" if len(idle) > 5 else "")
        graph.warnings.append(f"{shown} hold weights but do not run in eval mode; the spec leaves them out, so "
                              "the original state_dict loads only with strict=False (build the model without "
                              "them, e.g. aux_logits=False)")
    return graph


def _traced(model, input_shape, training: bool):
    """The fx GraphModule of `model`'s forward as it runs in training or eval mode, with the shapes of
    one forward pass in eval mode on a zero input."""
    import torch
    import torch.fx as fx
    from torch.fx.passes.shape_prop import ShapeProp

    class Tracer(fx.Tracer):
        def is_leaf_module(self, m, qualname):
            return type(m).__name__ in SUPPORTED_MODULES and type(m).__module__.startswith("torch.nn") or \
                type(m).__name__ in TORCHVISION_MODULES and type(m).__module__.startswith("torchvision.") or \
                super().is_leaf_module(m, qualname) and not isinstance(m, torch.nn.Sequential)

    tracer = Tracer()
    tracer.record_stack_traces = True
    model.train(training)
    try:
        graph = tracer.trace(model)
    except Exception as e:  # noqa: BLE001 - forward() did something symbolic tracing cannot follow
        raise ImportFailure(f"torch.fx cannot trace `{type(model).__name__}.forward`: {type(e).__name__}: "
                            f"{_first_line(e)}", "the forward must not branch on tensor values; control flow "
                            "on constructor arguments and `self.training` is fine") from None
    finally:
        model.eval()
    gm = fx.GraphModule(tracer.root, graph)
    gm.eval()
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(torch.zeros(1, *input_shape))
    except Exception as e:  # noqa: BLE001 - the model rejects this input shape
        raise ImportFailure(f"the model does not run on a 1x{'x'.join(map(str, input_shape))} input: "
                            f"{type(e).__name__}: {_first_line(e)}", "give the input shape with --input") from None
    return gm


def _idle(graph: LayerGraph, original: dict) -> list[str]:
    """The modules with weights of their own that no layer of `graph` uses."""
    used = {layer.path for layer in graph.layers if layer.path is not None}
    return [path for path, m in original.items() if path and path not in used and
            any(True for _ in m.parameters(recurse=False)) | any(True for _ in m.buffers(recurse=False))]


def _training_graph(model, input_shape, name, source, evaluated: LayerGraph, original) -> LayerGraph | None:
    """The graph of `model` traced in training mode, when it runs every module with weights and returns
    the eval outputs (first) and others (its training outputs); None otherwise."""
    try:
        graph = _layers(_traced(model, input_shape, training=True), input_shape, name, source)
    except ImportFailure:
        return None
    if _idle(graph, original):
        return None

    def key(g, n):  # a layer the same in both traces: its module (fx numbers functions per trace)
        layer = g.layer(n)
        return (layer.path, layer.op) if layer.path is not None else (n, layer.op)

    always = [key(evaluated, o) for o in evaluated.outputs or (evaluated.output,)]
    found = {key(graph, o): o for o in graph.outputs or (graph.output,)}
    if not all(k in found for k in always) or len(found) == len(always):
        return None
    first = tuple(found[k] for k in always)
    graph.training_outputs = tuple(o for o in found.values() if o not in first)
    graph.outputs = first + graph.training_outputs
    graph.output = first[0]
    return graph


def _first_line(e: Exception) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def _layers(gm, input_shape, name, source) -> LayerGraph:
    import torch

    modules = dict(gm.named_modules())
    layers: list[Layer] = []
    alias: dict[str, str] = {}  # node -> the layer whose value it is (nodes that compute no layer)
    pending: dict[str, tuple] = {}  # node -> a step of a reshape pattern (channel shuffle, chunk)
    tuples: dict[str, list] = {}  # node -> the nodes of the named tuple it builds (to be returned)
    last: set[str] = set()  # nodes whose tensors are channels-last (N x H x W x C)
    outputs = None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if alias:
                raise ImportFailure("the model takes more than one input", "graphdsl networks have one input")
            alias[node.name] = INPUT
            continue
        if node.op == "output":
            outputs = _outputs(node.args[0], alias, tuples)
            continue
        if node.op == "call_function" and isinstance(node.target, type) and issubclass(node.target, tuple):
            tuples[node.name] = list(node.args) + list(node.kwargs.values())  # GoogLeNetOutputs(x, aux2, aux1)
            continue
        if node.op == "get_attr":
            alias[node.name] = PARAMETER
            continue
        meta = node.meta.get("tensor_meta")
        if _is_size(node, alias):
            alias[node.name] = SIZE
            continue
        step = _reshape_step(node, alias, pending)
        if step is not None:
            if isinstance(step, Step):
                pending[node.name] = step
                continue
            op, args, tensors, module = step
        elif node.op == "call_function" and node.target in (operator.mul, torch.mul, operator.imul) and \
                any(isinstance(a, torch.fx.Node) and a.op == "get_attr" for a in node.args):
            op, args, tensors, module = _layer_scale(node, gm, last)
        else:
            op, args, tensors, module = _translate(node, modules)
        if op == "permute" and args["dims"] == (0, 2, 3, 1) or op != "permute" and \
                any(t.name in last for t in tensors):
            last.add(node.name)  # channels-last, up to the permute back
        if op is None:  # a no-op (identity-like): its value is its input's
            alias[node.name] = alias[tensors[0].name]
            continue
        path = node.target if node.op == "call_module" else None
        if op == "scale":  # a parameter of the module around, used as a per-channel factor (layer scale)
            path = next(t.target for t in node.args if isinstance(t, torch.fx.Node) and t.op == "get_attr")
        if any(t.name in pending for t in tensors):
            raise ImportFailure(f"`{node.name}` uses a reshaped tensor: only the channel shuffle "
                                "(view, transpose, view) and chunk/split of channels are supported",
                                where=_where(node))
        inputs = tuple(alias.get(t.name, t.name) for t in tensors)
        if SIZE in inputs:
            raise ImportFailure("a tensor size used as a value is not supported", where=_where(node))
        if PARAMETER in inputs:
            raise ImportFailure("a parameter used directly in forward() is supported only as a per-channel "
                                "factor (`self.layer_scale * x`)", "wrap it in a module", where=_where(node))
        stack = node.meta.get("nn_module_stack") or {}
        scopes = []
        for scope_path, cls in stack.values():
            if node.op == "call_module" and scope_path == node.target:
                continue
            scopes.append(Scope(scope_path, cls.__name__, issubclass(cls, torch.nn.Sequential)))
        holds = op == "scale" or module is not None and any(True for _ in module.parameters()) or \
            module is not None and any(True for _ in module.buffers())
        shape = tuple(meta.shape[1:]) if meta is not None and hasattr(meta, "shape") else None
        if op == "avgpool+flatten":  # `x.mean([2, 3])`
            pooled = f"{node.name}_pool"
            layers.append(Layer(pooled, "avgpool", args, inputs, None, tuple(scopes), shape + (1, 1) if shape else None,
                                _where(node)))
            op, args, inputs = "flatten", {}, (pooled,)
        layers.append(Layer(node.name, op, args, inputs, path, tuple(scopes), shape, _where(node), holds))
    if not outputs or INPUT in outputs:
        raise ImportFailure("the model computes nothing from its input")
    graph = LayerGraph(name, tuple(input_shape), layers, outputs[0], source,
                       outputs=tuple(outputs) if len(outputs) > 1 else ())
    return graph


SIZE, PARAMETER = "size", "parameter"  # what nodes that compute no tensor stand for


class Step(NamedTuple):
    """A step of a pattern of reshapes: its kind, the tensor node it started from, what it keeps."""

    kind: str
    source: object
    data: object


def _outputs(value, alias, tuples) -> list[str]:
    """The layers a forward returns: one tensor, or a tuple (a named tuple, GoogLeNetOutputs) of them."""
    import torch

    if isinstance(value, torch.fx.Node) and value.name in tuples:
        value = tuples[value.name]
    values = list(value) if isinstance(value, (tuple, list)) else [value]
    if not values or not all(isinstance(v, torch.fx.Node) for v in values):
        raise ImportFailure("the model returns something other than tensors",
                            "import a model that returns a tensor or a tuple of tensors")
    names = [alias.get(v.name, v.name) for v in values]
    if len(set(names)) < len(names):
        raise ImportFailure("the model returns one tensor twice", "return each output once")
    return names


def _is_size(node, alias) -> bool:
    """`x.size()`, `x.shape`, their items and arithmetic on them: numbers, no tensors."""
    import torch

    if node.op == "call_method" and node.target == "size":
        return True
    if node.op == "call_function" and node.target is getattr and node.args[1:] == ("shape",):
        return True
    if node.op == "call_function" and node.target in (operator.getitem, operator.floordiv, operator.mul,
                                                      operator.add, operator.sub, operator.truediv):
        ins = [a for a in node.args if isinstance(a, torch.fx.Node)]
        return bool(ins) and all(alias.get(a.name) == SIZE for a in ins)
    return False


def _meta_shape(node):
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _reshape_step(node, alias, pending):
    """The steps of the patterns made of reshapes and tuples: a Step (kept in `pending`), the
    layer they end in ((op, args, tensors, None)), or None for a node of no pattern.

    - the channel shuffle of ShuffleNet, `x.view(n, g, c // g, h, w)`, `transpose(1, 2)`, `contiguous()`,
      `view(n, c, h, w)`: `channel_shuffle(g)`;
    - `x.chunk(n, dim=1)`, `x.split(sizes, dim=1)` and the parts taken from them: `channels(start, stop)`."""
    import torch

    fn, args = node.target, node.args
    x = args[0] if args and isinstance(args[0], torch.fx.Node) else None
    state = pending.get(x.name) if x is not None else None
    is_view = node.op == "call_method" and fn in ("view", "reshape") or \
        node.op == "call_function" and fn is torch.reshape
    is_transpose = node.op == "call_method" and fn in ("transpose", "transpose_") or \
        node.op == "call_function" and fn is torch.transpose
    out = _meta_shape(node)
    if state is None:
        src = _meta_shape(x) if x is not None else None
        if is_view and src is not None and out is not None and len(src) == 4 and len(out) == 5 and \
                out[0] == src[0] and out[3:] == src[2:] and out[1] * out[2] == src[1]:
            return Step("grouped", x, out[1])
        is_chunk = node.op == "call_method" and fn in ("chunk", "split") or \
            node.op == "call_function" and fn in (torch.chunk, torch.split)
        if is_chunk:
            dim = node.kwargs.get("dim", args[2] if len(args) > 2 else 0)
            what = node.kwargs.get("chunks", node.kwargs.get("split_size_or_sections", args[1] if len(args) > 1
                                                              else None))
            if dim != 1 or src is None or len(src) < 2 or not isinstance(what, (int, list, tuple)):
                raise _unsupported(node, f"`{getattr(fn, '__name__', fn)}` along dimension {dim}",
                                   "x.chunk(n, dim=1) and x.split(sizes, dim=1): channels")
            c = src[1]
            if fn in ("chunk", torch.chunk):
                sizes = [-(-c // what)] * what  # as torch.chunk: parts of ceil(c / n), the last smaller
            else:
                sizes = list(what) if isinstance(what, (list, tuple)) else [what] * -(-c // what)
            bounds, start = [], 0
            for size in sizes:
                if start < c:
                    bounds.append((start, min(c, start + size)))
                start += size
            return Step("parts", x, tuple(bounds))
        return None
    kind = state[0]
    if kind == "parts" and node.op == "call_function" and fn is operator.getitem and isinstance(args[1], int):
        start, stop = state[2][args[1]]
        return "channels", {"start": start, "stop": stop}, [state[1]], None
    if kind == "grouped" and is_transpose and sorted(_transposed_dims(node)) == [1, 2]:
        return Step("shuffled", state[1], state[2])
    if kind == "shuffled" and node.op == "call_method" and fn == "contiguous":
        return state
    if kind == "shuffled" and (is_view or node.op == "call_method" and fn == "flatten" and args[1:] == (1, 2)) \
            and out == _meta_shape(state[1]):
        return "channel_shuffle", {"groups": state[2]}, [state[1]], None
    raise _unsupported(node, "this reshape of a tensor", "the channel shuffle (`x.view(n, g, c // g, h, w)`, "
                       "`transpose(1, 2)`, `view(n, c, h, w)`) and `chunk`/`split` of channels")


def _transposed_dims(node) -> tuple:
    dims = list(node.args[1:3]) + [node.kwargs.get(k) for k in ("dim0", "dim1") if k in node.kwargs]
    return tuple(d for d in dims if isinstance(d, int))


def _where(node) -> str:
    """`file.py:12` of the innermost frame of the model's code that made this node, or its module path."""
    trace = node.meta.get("stack_trace") or ""
    import torch

    inside_torch = str(Path(torch.__file__).parent)
    frames = [f for f in re.findall(r'File "([^"]+)", line (\d+)', trace) if not f[0].startswith(inside_torch)]
    if frames:
        file, line = frames[-1]
        return f"{file}:{line}"
    return f"`{node.target}`" if node.op == "call_module" else f"`{node.name}`"


def _pair(v):
    if isinstance(v, (tuple, list)):
        v = tuple(int(x) for x in v)
        return v[0] if len(v) == 2 and v[0] == v[1] else v
    return int(v)


def _unsupported(node, what: str, supported: str) -> ImportFailure:
    return ImportFailure(f"{what} is not supported", f"supported: {supported}", where=_where(node))


def _translate(node, modules):
    """(op, args, tensor inputs, module) for one fx node; op None for a node that passes its input on."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    if node.op == "call_module":
        m = modules[node.target]
        x = list(node.args[:1])
        kind = type(m).__name__
        if isinstance(m, nn.Conv2d) and kind == "Conv2d":
            if m.padding_mode != "zeros":
                raise _unsupported(node, f"Conv2d with padding_mode={m.padding_mode!r}", "padding_mode='zeros'")
            pad = m.padding
            if isinstance(pad, str):
                from ..values import Symbol

                pad = Symbol("same") if pad == "same" else 0
            else:
                pad = _pair(pad)
            return "conv", {"out": m.out_channels, "kernel": _pair(m.kernel_size), "stride": _pair(m.stride),
                            "pad": pad, "dilation": _pair(m.dilation), "groups": m.groups,
                            "bias": m.bias is not None}, x, m
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)) and kind in ("BatchNorm2d", "BatchNorm1d"):
            if not m.track_running_stats or m.momentum is None:
                raise _unsupported(node, f"{kind} without running statistics or with momentum=None",
                                   "track_running_stats=True and a momentum")
            return "bn", {"eps": _float(m.eps), "momentum": _float(m.momentum), "affine": bool(m.affine)}, x, m
        if kind == "Linear":
            return "linear", {"out": m.out_features, "bias": m.bias is not None}, x, m
        simple = {"ReLU": "relu", "ReLU6": "relu6", "SiLU": "silu", "Hardswish": "hardswish",
                  "Hardsigmoid": "hardsigmoid"}
        if kind in simple:
            return simple[kind], {"inplace": bool(m.inplace)}, x, m
        if kind in ("Sigmoid", "Tanh"):
            return kind.lower(), {}, x, m
        if kind == "GELU":
            if m.approximate != "none":
                raise _unsupported(node, f"GELU(approximate={m.approximate!r})", "GELU()")
            return "gelu", {}, x, m
        if kind == "LeakyReLU":
            return "leaky_relu", {"slope": float(m.negative_slope), "inplace": bool(m.inplace)}, x, m
        if kind == "ELU":
            return "elu", {"alpha": float(m.alpha), "inplace": bool(m.inplace)}, x, m
        if kind == "MaxPool2d":
            if m.return_indices:
                raise _unsupported(node, "MaxPool2d(return_indices=True)", "return_indices=False")
            return "maxpool", {"kernel": _pair(m.kernel_size), "stride": _pair(m.stride or m.kernel_size),
                               "pad": _pair(m.padding), "ceil": bool(m.ceil_mode), "dilation": _pair(m.dilation)}, x, m
        if kind == "AvgPool2d":
            if m.divisor_override is not None:
                raise _unsupported(node, "AvgPool2d(divisor_override=...)", "divisor_override=None")
            return "avgpool", {"kernel": _pair(m.kernel_size), "stride": _pair(m.stride or m.kernel_size),
                               "pad": _pair(m.padding), "ceil": bool(m.ceil_mode),
                               "count_include_pad": bool(m.count_include_pad)}, x, m
        if kind in ("AdaptiveAvgPool2d", "AdaptiveMaxPool2d"):
            return ("avgpool" if "Avg" in kind else "maxpool"), {"adaptive": _adaptive(node, m.output_size)}, x, m
        if kind == "Dropout":
            return "dropout", {"p": float(m.p)}, x, m
        if kind == "Flatten":
            if m.start_dim != 1 or m.end_dim != -1:
                raise _unsupported(node, f"Flatten({m.start_dim}, {m.end_dim})", "Flatten() (from dimension 1)")
            return "flatten", {}, x, m
        if kind == "Identity":
            return "identity", {}, x, m
        if kind == "LocalResponseNorm":
            return "lrn", {"size": m.size, "alpha": float(m.alpha), "beta": float(m.beta), "k": float(m.k)}, x, m
        if kind == "Softmax":
            if m.dim not in (1, -1):
                raise _unsupported(node, f"Softmax(dim={m.dim})", "Softmax(dim=1)")
            return "softmax", {}, x, m
        if kind == "StochasticDepth" and type(m).__module__.startswith("torchvision.ops"):
            return "stochastic_depth", {"p": float(m.p), "mode": m.mode}, x, m
        if kind == "Permute" and type(m).__module__.startswith("torchvision.ops"):
            return "permute", {"dims": _permutation(node, m.dims)}, x, m
        if kind in ("LayerNorm", "LayerNorm2d"):
            if len(m.normalized_shape) != 1 or m.elementwise_affine and m.bias is None:
                raise _unsupported(node, f"{kind}{tuple(m.normalized_shape)}" + (", bias=False" if len(
                    m.normalized_shape) == 1 else ""), f"{kind}(channels) with a bias")
            if kind == "LayerNorm" and len(_meta_shape(node.args[0]) or ()) == 4 and \
                    not _is_to_channels_last(node.args[0], modules):
                raise _unsupported(node, "LayerNorm over the last dimension (width) of an image",
                                   "LayerNorm of flat features, or of channels-last ones after "
                                   "x.permute(0, 2, 3, 1)")
            return "layer_norm", {"eps": _float(m.eps), "affine": bool(m.elementwise_affine)}, x, m
        if kind == "ChannelShuffle":
            return "channel_shuffle", {"groups": int(m.groups)}, x, m
        raise ImportFailure(f"module `{node.target}` of type `{type(m).__module__}.{kind}` is not supported",
                            f"supported modules: {', '.join(SUPPORTED_MODULES)}; modules of your own are traced "
                            "through", where=_where(node))
    fn = node.target
    args, kwargs = list(node.args), dict(node.kwargs)

    def arg(i, key, default=None):
        return args[i] if len(args) > i else kwargs.get(key, default)

    def is_node(v):
        return isinstance(v, torch.fx.Node)

    if node.op == "call_function":
        if fn is torch.permute:
            return "permute", {"dims": _permutation(node, arg(1, "dims"))}, args[:1], None
        if fn in (F.channel_shuffle, torch.channel_shuffle):
            return "channel_shuffle", {"groups": int(arg(1, "groups"))}, args[:1], None
        if fn in (operator.add, torch.add, operator.iadd, operator.mul, torch.mul, operator.imul):
            if len(args) != 2 or not all(is_node(a) for a in args) or kwargs:
                raise _unsupported(node, f"`{getattr(fn, '__name__', fn)}` of a tensor and a constant",
                                   "the sum or product of two tensors")
            return ("add" if fn in (operator.add, torch.add, operator.iadd) else "mul"), {}, args, None
        if fn is torch.cat:
            xs, dim = arg(0, "tensors"), arg(1, "dim", 0)
            if dim != 1 or not all(is_node(t) for t in xs):
                raise _unsupported(node, f"torch.cat along dimension {dim}", "torch.cat(xs, 1): channels")
            return "concat", {}, list(xs), None
        if fn is torch.flatten:
            if arg(1, "start_dim", 0) != 1 or arg(2, "end_dim", -1) != -1:
                raise _unsupported(node, "torch.flatten not from dimension 1", "torch.flatten(x, 1)")
            return "flatten", {}, args[:1], None
        acts = {F.relu: "relu", torch.relu: "relu", F.relu6: "relu6", torch.sigmoid: "sigmoid",
                F.sigmoid: "sigmoid", F.hardswish: "hardswish", F.hardsigmoid: "hardsigmoid", F.silu: "silu",
                torch.tanh: "tanh", F.gelu: "gelu"}
        if fn in acts:
            op = acts[fn]
            out = {"inplace": bool(arg(1, "inplace", False))} if op in ("relu", "relu6", "hardswish",
                                                                        "hardsigmoid", "silu") else {}
            return op, out, args[:1], None
        if fn is F.adaptive_avg_pool2d or fn is F.adaptive_max_pool2d:
            return ("avgpool" if fn is F.adaptive_avg_pool2d else "maxpool"), \
                {"adaptive": _adaptive(node, arg(1, "output_size"))}, args[:1], None
        if fn is F.dropout:
            return "dropout", {"p": float(arg(1, "p", 0.5))}, args[:1], None
        if fn in (F.max_pool2d, F.avg_pool2d):
            k = arg(1, "kernel_size")
            stride = arg(2, "stride") or k
            pad = arg(3, "padding", 0)
            if fn is F.max_pool2d:
                return "maxpool", {"kernel": _pair(k), "stride": _pair(stride), "pad": _pair(pad),
                                   "dilation": _pair(arg(4, "dilation", 1)),
                                   "ceil": bool(arg(5, "ceil_mode", False))}, args[:1], None
            return "avgpool", {"kernel": _pair(k), "stride": _pair(stride), "pad": _pair(pad),
                               "ceil": bool(arg(4, "ceil_mode", False)),
                               "count_include_pad": bool(arg(5, "count_include_pad", True))}, args[:1], None
        name = getattr(fn, "__qualname__", getattr(fn, "__name__", str(fn)))
        module = getattr(fn, "__module__", "") or ""
        raise ImportFailure(f"function `{module}.{name}` is not supported".replace("`.", "`"),
                            f"supported functions: {', '.join(SUPPORTED_FUNCTIONS)}", where=_where(node))
    if node.op == "call_method":
        if fn == "flatten" and (arg(1, "start_dim", 0) == 1 and arg(2, "end_dim", -1) == -1):
            return "flatten", {}, args[:1], None
        if fn in ("view", "reshape") and len(args) == 3 and args[2] == -1 and is_node(args[1]) and \
                args[1].op == "call_method" and args[1].target == "size" and args[1].args[1:] == (0,):
            return "flatten", {}, args[:1], None
        if fn in ("relu", "sigmoid", "tanh") and len(args) == 1:
            return fn, ({"inplace": False} if fn == "relu" else {}), args[:1], None
        if fn in ("relu_",) and len(args) == 1:
            return "relu", {"inplace": True}, args[:1], None
        if fn == "mean" and _dims(arg(1, "dim")) in ({2, 3}, {-2, -1}):
            # a global average pool; without keepdim also a flatten (emitted as two layers)
            return ("avgpool" if arg(2, "keepdim", False) else "avgpool+flatten"), \
                {"kernel": _global()}, args[:1], None
        if fn in ("contiguous",):
            return None, {}, args[:1], None
        if fn == "permute":
            dims = args[1] if len(args) == 2 and isinstance(args[1], (list, tuple)) else args[1:]
            return "permute", {"dims": _permutation(node, dims)}, args[:1], None
        raise ImportFailure(f"tensor method `.{fn}()` is not supported",
                            f"supported functions: {', '.join(SUPPORTED_FUNCTIONS)}", where=_where(node))
    raise ImportFailure(f"fx node `{node.name}` ({node.op}) is not supported", where=_where(node))


def _permutation(node, dims) -> tuple:
    dims = tuple(dims or ())
    if dims not in ((0, 2, 3, 1), (0, 3, 1, 2)):
        raise _unsupported(node, f"permute{dims}", "permute(0, 2, 3, 1) to channels-last and (0, 3, 1, 2) back")
    return dims


def _is_to_channels_last(node, modules) -> bool:
    """Whether `node` permutes an image to channels-last (N x H x W x C)."""
    import torch

    if not isinstance(node, torch.fx.Node):
        return False
    if node.op == "call_module":
        m = modules[node.target]
        return type(m).__name__ == "Permute" and tuple(m.dims) == (0, 2, 3, 1)
    if node.op == "call_method" and node.target == "permute" or node.op == "call_function" and \
            node.target is torch.permute:
        dims = node.args[1] if len(node.args) == 2 and isinstance(node.args[1], (list, tuple)) else node.args[1:]
        return tuple(dims) == (0, 2, 3, 1)
    return False


def _layer_scale(node, root, channels_last: set):
    """`self.layer_scale * x`: a parameter of shape C x 1 x 1 (or C on flat or channels-last features)
    multiplying a tensor, graphdsl's `scale` (its initial value, where all its entries are equal, as
    `init`)."""
    import torch

    attrs = [a for a in node.args if isinstance(a, torch.fx.Node) and a.op == "get_attr"]
    if len(attrs) != 1 or len(node.args) != 2:
        raise _unsupported(node, "a product of parameters", "a parameter times a tensor (a layer scale)")
    attr = attrs[0]
    (x,) = [a for a in node.args if a is not attr]
    try:
        value = root.get_parameter(attr.target)
    except AttributeError:
        raise _unsupported(node, f"a buffer (`{attr.target}`) used in forward()", "parameters as a per-channel "
                           "factor (`self.layer_scale * x`)") from None
    shape = tuple(value.shape)
    x_shape = _meta_shape(x) if isinstance(x, torch.fx.Node) else None
    x_shape = x_shape or ()
    if len(x_shape) == 4:
        per_channel = shape == (x_shape[-1],) if x.name in channels_last else shape == (x_shape[1], 1, 1)
    else:
        per_channel = len(x_shape) == 2 and shape == (x_shape[1],)
    if not per_channel:
        raise _unsupported(node, f"the parameter `{attr.target}` ({'x'.join(map(str, shape))}) times a "
                           f"{'x'.join(map(str, x_shape[1:]))} tensor", "a per-channel factor: C x 1 x 1 on an "
                           "image, C on flat or channels-last features")
    flat = value.detach().flatten()
    init = float(f"{float(flat[0]):.7g}") if bool((flat == flat[0]).all()) else 1.0  # float32: 1e-06
    return "scale", {"init": init}, [x], None


def _float(v) -> float:
    """A float as a person writes it: `1 - 0.9997` is 0.0003 (12 significant digits)."""
    return float(f"{float(v):.12g}")


def _dims(v):
    return set(v) if isinstance(v, (list, tuple)) else None


def _global():
    from ..values import Symbol

    return Symbol("global")


def _adaptive(node, size):
    if size is None:
        raise _unsupported(node, "adaptive pooling to None", "an output size")
    if isinstance(size, (tuple, list)) and any(s is None for s in size):
        raise _unsupported(node, "adaptive pooling keeping one dimension (None)", "an output size")
    return _pair(size)

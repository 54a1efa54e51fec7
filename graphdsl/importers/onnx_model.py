"""The ONNX front end: a `.onnx` file into a LayerGraph (named onnx_model.py, not onnx.py, beside the package).

The file is read with the `onnx` package (imported here, lazily: `import graphdsl.importers` stays
light). Nodes are taken in topological order from the network's one input to its output(s); each becomes
a layer in graphdsl's vocabulary (Conv -> conv, Gemm -> linear, Clip(0, 6) -> relu6, x * Sigmoid(x) ->
silu, ...), a constant (initializers, Constant nodes, and the shape arithmetic torch writes for
`x.view(x.size(0), -1)`, folded with numpy, the batch size standing for itself), or nothing (Identity).
Output shapes are computed here by each operator's rules and checked against what the file says:
the initializers' shapes (a Conv weight is out x in/group x kh x kw) and the value shapes the file
declares or onnx's shape inference finds. Anything else is an ImportFailure at that node.

Module hierarchy: torch's dynamo exporter (and `graphdsl export --format onnx`) records for each node
the modules it ran in (`pkg.torch.onnx.name_scopes`, `pkg.torch.onnx.class_hierarchy`). Where that is
there, each layer gets its module path and the enclosing modules as `Scope`s, as the torch.fx front end
gives them, so lifting writes the same blocks and the state_dict keys come back unchanged. A plain file
gives a flat graph: the layers holding weights are named after their nodes (`conv_0`), no scopes.

Files are untrusted: their size, node count and every dimension are bounded, and only small constants
(shape arithmetic) are ever computed.
"""

from __future__ import annotations

import ast as pyast
import heapq
import math
import re
from pathlib import Path

from .ir import INPUT, ImportFailure, Layer, LayerGraph, Scope, unique_name
from .onnx_ops import BATCH, MAX_DIM, SUPPORTED, Operators, Value, _attrs, _clamped, _shape_text

MAX_FILE_BYTES = 2 * 1024 ** 3  # protobuf's own limit for one message
MAX_NODES = 100_000
MAX_FOLDED = 1 << 16  # elements of a constant computed by folding (shape arithmetic is a handful)

DAMAGED = "the file is damaged or inconsistent; re-export it"
FOLDABLE = {"Constant", "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Cast", "Add", "Sub", "Mul",
            "Div", "Reshape", "Identity"}
CONTAINERS = ("torch.nn.modules.container.Sequential",)
LEAF_PREFIXES = ("torch.nn.modules.", "torchvision.ops.stochastic_depth.")
NON_LEAF = ("Sequential", "ModuleList", "ModuleDict")
# the operators that take channels-last tensors (ConvNeXt's block: permute, LayerNorm, Linear, GELU, Linear,
# permute back), as graphdsl's ops with channels_last = True
CHANNELS_LAST_OPS = {"layer_norm", "linear", "gelu", "relu", "relu6", "silu", "sigmoid", "tanh", "hardswish",
                     "hardsigmoid", "leaky_relu", "elu", "dropout", "add", "mul", "scale", "permute"}
DOTTED = re.compile(r"[A-Za-z_0-9]+(\.[A-Za-z_0-9]+)*")


def load(path, name: str | None = None, input_shape: tuple[int, ...] | None = None,
         warnings: list | None = None) -> LayerGraph:
    """The LayerGraph of the ONNX model in `path` (its initializers in `graph.weights`, keyed as the
    compiled spec's state_dict). `input_shape` (without the batch) is needed where the file leaves
    the input's dimensions open. What the spec leaves out goes to `warnings`. Raises ImportFailure."""
    path = Path(path)
    model = _read(path)
    graph = _Importer(model, path, name, input_shape).run()
    if warnings is not None:
        warnings.extend(graph.warnings)
    return graph


# ---- reading the file ---------------------------------------------------------------------------------------


def _read(path: Path):
    try:
        import onnx
    except ImportError:
        raise ImportFailure("importing ONNX needs the `onnx` package", "pip install -e '.[onnx]'") from None
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ImportFailure(f"cannot read `{path}`: {e.strerror or e}", "give the path of an .onnx file") from None
    if size > MAX_FILE_BYTES:
        raise ImportFailure(f"`{path}` is {size / 2 ** 30:.1f} GiB, more than the {MAX_FILE_BYTES // 2 ** 30} GiB "
                            "an ONNX file can hold", "import a model of at most 2 GiB", where=str(path))
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and friends: the file is no model
        raise ImportFailure(f"`{path}` is not a readable ONNX model ({type(e).__name__}: {_first_line(e)})",
                            "the file may be truncated or of another format; re-export it", where=str(path)) from None
    if not model.HasField("graph") or not model.graph.node:
        raise ImportFailure(f"`{path}` holds no graph (an empty or truncated file?)",
                            "re-export the model", where=str(path))
    if len(model.graph.node) > MAX_NODES:
        raise ImportFailure(f"the graph has {len(model.graph.node)} nodes, more than the {MAX_NODES} imported",
                            "import a smaller model", where=str(path))
    external = [t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        total = sum(int(e.value) for t in external for e in t.external_data if e.key == "length" and e.value.isdigit())
        if total > MAX_FILE_BYTES:
            raise ImportFailure(f"the external weights are {total / 2 ** 30:.1f} GiB", "import a smaller model",
                                where=str(path))
        try:
            from onnx.external_data_helper import load_external_data_for_model

            load_external_data_for_model(model, str(path.parent))
        except Exception as e:  # noqa: BLE001 - a missing or malicious external data path
            raise ImportFailure(f"cannot read the external weights of `{path}`: {_first_line(e)}",
                                "keep the weight files beside the model, as exported", where=str(path)) from None
    return model


def _first_line(e: Exception) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:300] if lines else type(e).__name__


def _identifier(text: str, fallback: str) -> str:
    from ..syntax import NAME_RESERVED

    name = re.sub(r"[^A-Za-z0-9_]", "_", text).strip("_") or fallback
    if not re.match(r"[A-Za-z_]", name):
        name = f"{fallback}_{name}"
    return f"{name}_" if name in NAME_RESERVED or name == INPUT else name


# ---- the importer -----------------------------------------------------------------------------------------


class _Importer(Operators):
    def __init__(self, model, path: Path, name: str | None, input_shape):
        self.model, self.path, self.graph = model, path, model.graph
        self.name = name or _identifier(path.stem, "net")
        self.requested_shape = tuple(input_shape) if input_shape else None
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.const: dict = {}  # tensor -> numpy array
        self.act: dict[str, Value] = {}  # tensor -> Value
        self.layers: list[Layer] = []
        self.layer_names: set[str] = {INPUT}
        self.paths: set[str] = set()
        self.weights: dict = {}
        self.warnings: list[str] = []
        self.absorbed: set[int] = set()  # nodes translated together with another one
        self.fused: dict[int, tuple] = {}  # node -> what an earlier node left for it
        self.batch = BATCH
        self.last: set[str] = set()  # layers whose output is channels-last (N x H x W x C)
        self.borrowed: dict[int, list] = {}  # node -> scopes taken from its users (nodes without metadata)

    # -- the whole graph

    def run(self) -> LayerGraph:
        from onnx import numpy_helper

        for t in self.graph.initializer:
            if any(d < 0 for d in t.dims):
                raise ImportFailure(f"initializer `{t.name}` has the impossible shape {list(t.dims)} (a negative "
                                    "dimension)", DAMAGED, where=t.name)
            if math.prod(t.dims) > MAX_FILE_BYTES:
                raise ImportFailure(f"initializer `{t.name}` has the impossible shape {list(t.dims)}: more values "
                                    "than an ONNX file of 2 GiB holds", DAMAGED, where=t.name)
            try:
                self.const[t.name] = numpy_helper.to_array(t)
            except Exception as e:  # noqa: BLE001 - a tensor whose data does not match its shape
                raise ImportFailure(f"initializer `{t.name}` cannot be read: {_first_line(e)}",
                                    "the file is damaged; re-export it", where=t.name) from None
        self.input_name = self._input()
        self.declared = self._declared_shapes()
        self.hierarchy = self._hierarchy()
        order = self._order()
        self.consumers = self._consumers(order)
        # Constants first: a pattern (gelu's Erf, Add 1, Mul 0.5) reads constants the file defines later
        constants = [i for i in order if self.nodes[i].op_type == "Constant"]
        for i in constants + [i for i in order if self.nodes[i].op_type != "Constant"]:
            node = self.nodes[i]
            if i in self.absorbed:
                continue
            self._node(i, node)
        outputs = []
        for out in self.graph.output:
            if out.name in self.const:
                raise ImportFailure(f"the output `{out.name}` is a constant", "export a network that computes its "
                                    "output from its input", where=out.name)
            value = self.act.get(out.name)
            if value is None:
                raise ImportFailure(f"the output `{out.name}` is computed by no node",
                                    "the file is damaged or was cut; re-export the model", where=out.name)
            if value.layer == INPUT:
                raise ImportFailure(f"the output `{out.name}` is the input itself", "export a network that computes "
                                    "its output from its input", where=out.name)
            outputs.append(value.layer)
        if not outputs:
            raise ImportFailure("the graph has no outputs", "re-export the model", where=str(self.path))
        if self.hierarchy is not None:
            self._fill_numbering()
        graph = LayerGraph(self.name, self.input_shape, self.layers, outputs[-1], str(self.path.name),
                           outputs=tuple(outputs) if len(outputs) > 1 else ())
        graph.weights = self.weights
        graph.warnings = self.warnings
        return graph

    def _input(self) -> str:
        inputs = [i for i in self.graph.input if i.name not in self.const]
        if len(inputs) != 1:
            names = ", ".join(f"`{i.name}`" for i in inputs) or "none"
            raise ImportFailure(f"the graph takes {len(inputs)} inputs ({names})", "graphdsl networks take one "
                                "tensor; export the model with one input", where=inputs[1].name if inputs else None)
        (inp,) = inputs
        tt = inp.type.tensor_type
        if not inp.type.HasField("tensor_type") or tt.elem_type not in (1, 10, 11, 16):  # float, 16, double, bf16
            raise ImportFailure(f"the input `{inp.name}` is not a float tensor", "graphdsl networks take a float "
                                "tensor", where=inp.name)
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim]
        if not tt.HasField("shape") or len(dims) < 2:
            raise ImportFailure(f"the input `{inp.name}` has no batch and feature dimensions",
                                "the input must be N x C (x H x W)", where=inp.name)
        self.batch = dims[0] if dims[0] is not None else BATCH
        given = self.requested_shape
        shown = "x".join(str(d) if d is not None else "?" for d in dims)
        if len(dims) not in (2, 4):  # graphdsl's `input`: C x H x W or C, the batch implicit
            raise ImportFailure(f"the input `{inp.name}` is {shown}: graphdsl networks take images "
                                "(N x C x H x W) or vectors (N x C)", "export the model with a 4-D or 2-D input; "
                                "graphdsl has no 1-D or 3-D convolutions", where=inp.name)
        if given is not None:
            if len(given) != len(dims) - 1 or any(d is not None and d != g for d, g in zip(dims[1:], given)):
                raise ImportFailure(f"the input `{inp.name}` is {shown}, which a "
                                    f"{'x'.join(map(str, given))} input does not fit",
                                    f"give --input with {len(dims) - 1} dimensions matching the file", where=inp.name)
            shape = given
        elif any(d is None for d in dims[1:]):
            raise ImportFailure(f"the input `{inp.name}` has open dimensions ({shown})",
                                "give the input shape without the batch, e.g. --input 3x224x224", where=inp.name)
        else:
            shape = tuple(dims[1:])
        if any(d > MAX_DIM for d in shape) or math.prod(shape) > MAX_DIM * 64:
            raise ImportFailure(f"the input `{inp.name}` is too large ({shown})",
                                f"graphdsl takes inputs of at most {MAX_DIM:,} per dimension and {MAX_DIM * 64:,} "
                                "values per sample; export the model for a smaller input", where=inp.name)
        self.input_shape = tuple(shape)
        self.act[inp.name] = Value(INPUT, self.input_shape)
        return inp.name

    def _declared_shapes(self) -> dict:
        """tensor -> shape without the batch, where the file (or onnx's shape inference) states it fully."""
        import onnx

        infos = list(self.graph.value_info) + list(self.graph.output)
        try:
            inferred = onnx.shape_inference.infer_shapes(self.model, strict_mode=False)
            infos = list(inferred.graph.value_info) + infos  # the file's own entries win
        except Exception:  # noqa: BLE001 - inference is a cross-check only; our own rules still run
            pass
        out = {}
        for vi in infos:
            tt = vi.type.tensor_type
            if not vi.type.HasField("tensor_type") or not tt.HasField("shape"):
                continue
            dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
            if len(dims) >= 2 and all(d is not None for d in dims[1:]):
                out[vi.name] = tuple(dims[1:])
        return out

    def _order(self) -> list[int]:
        """The nodes that lead to an output, in the file's order where it is a topological one."""
        self.nodes = list(self.graph.node)
        producer: dict[str, int] = {}
        known = set(self.const) | {self.input_name}
        for i, node in enumerate(self.nodes):
            for o in node.output:
                if o and (o in producer or o in known):
                    raise ImportFailure(f"{node.op_type}: its output `{o}` is also computed elsewhere",
                                        "each value of an ONNX graph has one producer", where=self._where(i))
                if o:
                    producer[o] = i
        for i, node in enumerate(self.nodes):
            for name in node.input:
                if name and name not in producer and name not in known:
                    raise ImportFailure(f"{node.op_type}: its input `{name}` is computed by no node and is no "
                                        "initializer", "the file is damaged or was cut", where=self._where(i))
        needed: set[int] = set()
        stack = [producer[o.name] for o in self.graph.output if o.name in producer]
        while stack:
            i = stack.pop()
            if i in needed:
                continue
            needed.add(i)
            stack.extend(producer[n] for n in self.nodes[i].input if n in producer)
        idle = [i for i in range(len(self.nodes)) if i not in needed and self.nodes[i].op_type != "Constant"]
        if idle:
            self.warnings.append(f"{len(idle)} nodes do not lead to an output and are left out (the first: "
                                 f"`{self._where(idle[0])}`)")
        waiting = {i: len({producer[n] for n in self.nodes[i].input if n in producer}) for i in needed}
        users: dict[int, set] = {}
        for i in needed:
            for p in {producer[n] for n in self.nodes[i].input if n in producer}:
                users.setdefault(p, set()).add(i)
        ready = [i for i, n in waiting.items() if n == 0]
        heapq.heapify(ready)
        order = []
        while ready:
            i = heapq.heappop(ready)
            order.append(i)
            for u in users.get(i, ()):
                waiting[u] -= 1
                if waiting[u] == 0:
                    heapq.heappush(ready, u)
        if len(order) != len(needed):
            stuck = min(i for i in needed if waiting[i] > 0)
            raise ImportFailure(f"{self.nodes[stuck].op_type}: the graph has a cycle through this node",
                                "ONNX graphs are acyclic", where=self._where(stuck))
        self.producer = producer
        return order

    def _consumers(self, order) -> dict:
        out: dict[str, list[int]] = {}
        for i in order:
            for name in self.nodes[i].input:
                if name:
                    out.setdefault(name, []).append(i)
        for o in self.graph.output:
            out.setdefault(o.name, []).append(-1)
        return out

    def _where(self, i: int) -> str:
        node = self.nodes[i]
        return node.name or f"{node.op_type}_{i}"

    # -- hierarchy

    def _hierarchy(self) -> dict | None:
        """module path -> (class, sequential) from the dynamo exporter's metadata, or None without it."""
        modules: dict[str, str] = {}
        found = False
        for node in self.graph.node:
            scopes = self._scopes_of(node)
            if scopes is None:
                continue
            found = True
            for p, cls in scopes[1:-1]:
                modules.setdefault(p, cls)
        if not found:
            return None
        numbered = {p.rpartition(".")[0] for p in modules if p.rpartition(".")[2].isdigit()}
        return {p: (cls, cls in CONTAINERS or p in numbered) for p, cls in modules.items()}

    @staticmethod
    def _scopes_of(node):
        """[(module path, class)] from the root to the aten op, or None."""
        meta = {p.key: p.value for p in node.metadata_props}
        names, classes = meta.get("pkg.torch.onnx.name_scopes"), meta.get("pkg.torch.onnx.class_hierarchy")
        if not names or not classes or len(names) > 100_000 or len(classes) > 100_000:
            return None
        try:
            names, classes = pyast.literal_eval(names), pyast.literal_eval(classes)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
        if not (isinstance(names, list) and isinstance(classes, list) and len(names) == len(classes) >= 2
                and names[0] == "" and all(isinstance(x, str) for x in names + classes)):
            return None
        if not all(DOTTED.fullmatch(p) for p in names[1:-1]):
            return None
        return list(zip(names, classes))

    def _place(self, node, i: int, holds: bool, weight: str | None):
        """(path, scopes) of the layer a node makes."""
        scopes = self.borrowed.get(i) or self._scopes_of(node) if self.hierarchy is not None else None
        if scopes is None:
            if self.hierarchy is not None and holds and weight and weight.endswith(".weight") and \
                    DOTTED.fullmatch(weight[:-7]):
                path = weight[:-7]
                return path, self._enclosing(path, sorted((p for p in self.hierarchy if path.startswith(p + ".")),
                                                            key=len))
            return (self._flat_path(node, i, weight) if holds else None), ()
        modules = scopes[1:-1]
        leaf = None
        if modules:
            p, cls = modules[-1]
            if cls.startswith(LEAF_PREFIXES) and cls.rpartition(".")[2] not in NON_LEAF:
                leaf = p
        path = leaf
        if holds and weight and weight.endswith(".weight") and DOTTED.fullmatch(weight[:-7]):
            path = weight[:-7]  # a BatchNorm folded into its Conv by the exporter: the conv's module
        if holds and path is None:
            path = self._flat_path(node, i, weight)
        inside = [p for p, _ in modules if path is None or path.startswith(p + ".")]
        return path, self._enclosing(path, inside)

    def _enclosing(self, path, inside) -> tuple:
        return tuple(Scope(p, self.hierarchy[p][0].rpartition(".")[2], self.hierarchy[p][1]) for p in inside)

    def _fill_numbering(self) -> None:
        """An `identity` for each numbered module of an nn.Sequential that left no node in the file (a
        Dropout, or an Identity, in eval mode) before one with weights: a group numbers its statements by
        position, so without it `classifier.1.weight` would come back as `classifier.0.weight`."""
        weighted = {p for layer in self.layers if layer.holds_weights
                    for p in _prefixes(layer.path)}
        expected: dict[str, int] = {}
        seen: set[str] = set()
        out: list[Layer] = []
        shapes = {INPUT: self.input_shape} | {layer.name: layer.shape for layer in self.layers}
        rewire: tuple | None = None  # (child path, old input, new input) while inside that child
        for layer in self.layers:
            chain = [s.path for s in layer.scopes] + ([layer.path] if layer.path else [])
            if rewire is not None:
                if rewire[0] in chain:
                    layer.inputs = tuple(rewire[2] if n == rewire[1] else n for n in layer.inputs)
                else:
                    rewire = None
            for depth, scope in enumerate(layer.scopes):
                child = next((p for p in chain if p.rpartition(".")[0] == scope.path), None)
                if not scope.sequential or child is None or child in seen:
                    continue
                seen.add(child)
                number = child.rpartition(".")[2]
                if not number.isdigit():
                    continue
                start, k = expected.get(scope.path, 0), int(number)
                expected[scope.path] = k + 1
                if k <= start or child not in weighted or len(layer.inputs) != 1:
                    continue
                source = layer.inputs[0]
                for j in range(start, k):
                    name = self._fresh_layer(f"{scope.path}.{j}")
                    out.append(Layer(name, "identity", {}, (source,), f"{scope.path}.{j}", layer.scopes[:depth + 1],
                                     shapes[layer.inputs[0]], layer.where))
                    source = name
                rewire = (child, layer.inputs[0], source)
                layer.inputs = (source,)
            out.append(layer)
        self.layers = out

    def _fresh_layer(self, text: str) -> str:
        return unique_name(_identifier(text, "t"), self.layer_names)

    def _flat_path(self, node, i: int, weight: str | None) -> str:
        """A unique identifier for a layer holding weights in a plain file: its node's name (the module
        path in `/features/features.0/Conv`), else its weight's."""
        text = node.name
        parts = text.split("/")
        if len(parts) > 2 and re.fullmatch(rf"{node.op_type}(_\d+)?", parts[-1]):
            # torch's TorchScript exporter names a node by its modules' scopes, where a container's child
            # extends the container's name: `/layer2/layer2.0/downsample/downsample.0/Conv` is the module
            # `layer2.0.downsample.0`, the prefix of its state_dict keys
            path: list[str] = []
            for scope in parts[1:-1]:
                if path and scope.startswith(path[-1] + "."):
                    path[-1] = scope
                elif scope:
                    path.append(scope)
            text = ".".join(path)
        if not text and weight:
            text = re.sub(r"[._]?(weight|w)$", "", weight, flags=re.I)
        base = _identifier(text, node.op_type.lower())
        name, n = base, 1
        while name in self.paths:
            n += 1
            name = f"{base}_{n}"
        return name

    # -- inputs of a node

    def tensor(self, i: int, k: int = 0) -> Value:
        node = self.nodes[i]
        name = node.input[k] if k < len(node.input) else ""
        if name in self.act:
            return self.act[name]
        if name in self.const:
            raise self.fail(i, f"its input {k + 1} (`{name}`) is a constant where a tensor computed from the "
                               "network's input is expected", "such nodes are not supported")
        raise self.fail(i, f"input {k + 1} is missing", DAMAGED)

    def constant(self, i: int, k: int, default=None, what: str = "this input", required: bool = False):
        node = self.nodes[i]
        name = node.input[k] if k < len(node.input) else ""
        if not name and required:
            raise self.fail(i, f"{what} (input {k + 1}) is missing", "the file is damaged; re-export it")
        if not name:
            return default
        if name in self.const:
            return self.const[name]
        raise self.fail(i, f"{what} (`{name}`) is computed from the network's input; it must be a constant",
                        "export with constant folding, so that weights and sizes are initializers")

    def borrow_scopes(self, i: int, outputs) -> None:
        """Node `i` without metadata (torch's exporter writes a chunk's Split without any) is placed in the
        modules all the users of its `outputs` share, as the torch.fx front end places the chunk."""
        if self.hierarchy is None or self._scopes_of(self.nodes[i]) is not None:
            return
        common = None
        for name in outputs:
            for user in self.consumers.get(name, []):
                scopes = self._scopes_of(self.nodes[user]) if user >= 0 else None
                if scopes is None:
                    return
                scopes = scopes[:-1]
                if common is None:
                    common = scopes
                else:
                    k = 0
                    while k < min(len(common), len(scopes)) and common[k] == scopes[k]:
                        k += 1
                    common = common[:k]
        while common and len(common) > 1 and common[-1][1].startswith(LEAF_PREFIXES):
            common = common[:-1]  # a user's own module (a Conv's) is not the chunk's
        if common:
            self.borrowed[i] = [*common, ("", self.nodes[i].op_type)]

    def fail(self, i: int, message: str, help: str) -> ImportFailure:
        """The failure at node `i`: every one says what to do (`help`)."""
        return ImportFailure(f"{self.nodes[i].op_type}: {message}", help, where=self._where(i))

    def only_user(self, name: str):
        """The node index that is the only consumer of `name`, or None."""
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0] >= 0 else None

    # -- making layers

    def emit(self, i: int, op: str, args: dict, inputs: list[Value], shape: tuple, *, weights: dict | None = None,
             weight_name: str | None = None, output: str | None = None, meta: int | None = None,
             path: str | None = None) -> Value:
        """The layer of node `i` (placed by the metadata of node `meta`, by default `i`); `path` names a
        layer whose weights are an initializer of their own (a layer scale: `features.1.0.layer_scale`)."""
        node = self.nodes[i if meta is None else meta]
        shape = tuple(int(d) for d in shape)
        if any(d <= 0 or d > MAX_DIM for d in shape):
            raise self.fail(i, f"its output would be {_shape_text(shape)}", "check the input shape (--input)")
        output = output if output is not None else node.output[0]
        declared = self.declared.get(output)
        if declared is not None and declared != shape:
            raise self.fail(i, f"the file says its output `{output}` is {_shape_text(declared)}, but a `{op}` "
                               f"of {_shape_text(inputs[0].shape)} gives {_shape_text(shape)}", DAMAGED)
        last = self._channels_last(i, op, args, inputs)
        holds = bool(weights)
        if path is None:
            path, scopes = self._place(node, i if meta is None else meta, holds, weight_name)
        else:
            scopes = self._place(node, i if meta is None else meta, False, None)[1]
            scopes = tuple(s for s in scopes if path.startswith(s.path + "."))
        if holds:
            if path in self.paths:
                raise self.fail(i, f"a second layer with weights under `{path}`",
                                "shared weights are not supported")
            self.paths.add(path)
            for suffix, array in weights.items():
                self.weights[f"{path}.{suffix}" if suffix else path] = array  # "": the parameter is the layer's
        name = self._fresh_layer(output)
        self.layers.append(Layer(name, op, args, tuple(v.layer for v in inputs), path, scopes, shape,
                                 self._where(i), holds))
        if last:
            self.last.add(name)
        value = Value(name, shape)
        self.act[output] = value
        return value

    def _channels_last(self, i: int, op: str, args: dict, inputs: list[Value]) -> bool:
        """Whether the layer's output is channels-last (N x H x W x C, after a permute to it, up to the
        permute back); an operator of images given a channels-last tensor is an ImportFailure."""
        last = [v.layer in self.last for v in inputs]
        if op == "permute":
            return args["dims"] == (0, 2, 3, 1)
        if not any(last):
            return False
        if op not in CHANNELS_LAST_OPS or not all(last):
            raise self.fail(i, f"a `{op}` of a channels-last tensor (N x H x W x C, after a Transpose to it) is not "
                               "supported", "supported on channels-last tensors: LayerNormalization, MatMul (+ Add), "
                            "Gelu, elementwise activations, Add, Mul by a layer scale, and the Transpose back "
                            "[0, 3, 1, 2]")
        return True

    # -- one node

    def _node(self, i: int, node) -> None:
        if node.domain not in ("", "ai.onnx"):
            raise self.fail(i, f"operators of the domain `{node.domain}` are not supported",
                            f"supported: {', '.join(SUPPORTED)}")
        a = _attrs(node)
        if any(k in a and not isinstance(a[k], (int, float, str, list, tuple)) for k in a
               if node.op_type != "Constant"):
            raise self.fail(i, "a graph or tensor attribute here is not supported",
                            f"supported: {', '.join(SUPPORTED)}")
        ins = [n for n in node.input if n]
        if node.op_type == "Shape" or node.op_type in FOLDABLE and all(n in self.const for n in ins):
            self._fold(i, node, a)
            return
        handler = getattr(self, f"op_{node.op_type}", None)
        if handler is None:
            raise self.fail(i, "this operator is not supported", f"supported: {', '.join(SUPPORTED)}")
        try:
            handler(i, node, a)
        except ImportFailure:
            raise
        except (ValueError, TypeError, IndexError, KeyError, AttributeError, OverflowError, ZeroDivisionError) as e:
            # attributes or constants of the wrong kind: a damaged file, said as such rather than a traceback
            raise self.fail(i, f"its attributes or constant inputs cannot be read ({type(e).__name__}: "
                               f"{_first_line(e)})", "the file is damaged or uses this operator in a way not "
                            "supported; re-export it") from None

    # -- folding constants

    def _fold(self, i: int, node, a) -> None:
        cs = [self.const.get(n) if n else None for n in node.input]
        needed = {"Constant": 0, "Shape": 1, "Identity": 1, "Cast": 1, "Unsqueeze": 1, "Squeeze": 1, "Slice": 1}
        if node.op_type != "Shape" and any(c is None for c in cs[:needed.get(node.op_type, len(cs))]):
            raise self.fail(i, "an input is missing", "the file is damaged; re-export it")
        try:
            result = self._folded(i, node, a, cs)
        except ImportFailure:
            raise
        except (ValueError, TypeError, IndexError, KeyError, AttributeError, OverflowError, ZeroDivisionError) as e:
            raise self.fail(i, f"its constant inputs do not fit it ({type(e).__name__}: {_first_line(e)})",
                            "the file is damaged; re-export it") from None
        self._bound(i, result.size)
        self.const[node.output[0]] = result

    def _folded(self, i: int, node, a, cs):
        """The value of a node whose inputs are all constants (or, for Shape, known in shape)."""
        import numpy as np

        op = node.op_type
        if op == "Constant":
            result = self._constant_attr(i, a)
        elif op == "Identity":
            result = cs[0]
        elif op == "Shape":
            value = self.act.get(node.input[0])
            dims = np.array(([self.batch, *value.shape]) if value is not None else cs[0].shape, dtype=np.int64)
            result = dims[a.get("start", 0):a.get("end", len(dims))]
        elif op == "Gather":
            data, idx = cs[0], cs[1].astype(np.int64)
            axis = a.get("axis", 0)
            if not -data.ndim <= axis < max(data.ndim, 1) or data.ndim == 0:
                raise self.fail(i, f"axis {axis} of a constant of rank {data.ndim}", DAMAGED)
            size = data.shape[axis]
            if idx.size and (idx.min() < -size or idx.max() >= size):
                raise self.fail(i, "an index is out of range", DAMAGED)
            self._bound(i, data.size // max(size, 1) * idx.size)
            result = np.take(data, idx, axis=axis)
        elif op in ("Unsqueeze", "Squeeze"):
            axes = cs[1] if len(cs) > 1 and cs[1] is not None else a.get("axes")
            data = cs[0]
            if op == "Unsqueeze":
                if axes is None:
                    raise self.fail(i, "no axes", DAMAGED)
                rank = data.ndim + len(axes)
                shape = list(data.shape)
                for ax in sorted(int(x) % rank for x in axes):
                    shape.insert(ax, 1)
                result = data.reshape(shape)
            else:
                result = np.squeeze(data, axis=tuple(int(x) for x in axes) if axes is not None else None)
        elif op == "Concat":
            parts = [c for c in cs if c is not None]
            self._bound(i, sum(c.size for c in parts))
            result = np.concatenate([np.atleast_1d(c) for c in parts], axis=a.get("axis", 0))
        elif op == "Slice":
            result = self._slice_constant(i, node, a, cs)
        elif op == "Cast":
            from onnx import helper

            result = cs[0].astype(helper.tensor_dtype_to_np_dtype(a["to"]))
        elif op in ("Add", "Sub", "Mul", "Div"):
            self._bound(i, math.prod(np.broadcast_shapes(cs[0].shape, cs[1].shape)))
            x, y = cs[0], cs[1]
            if op == "Div" and np.issubdtype(x.dtype, np.integer):
                if np.any(y == 0):
                    raise self.fail(i, "an integer division by zero", DAMAGED)
                result = np.trunc(x / y).astype(x.dtype)  # ONNX truncates towards zero
            else:
                result = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op](x, y)
        elif op == "Reshape":
            target = [int(d) for d in cs[1]]
            target = [cs[0].shape[k] if d == 0 and not a.get("allowzero", 0) else d for k, d in enumerate(target)]
            try:
                result = cs[0].reshape(target)
            except ValueError:
                raise self.fail(i, f"a constant of shape {_shape_text(cs[0].shape)} cannot become "
                                   f"{_shape_text(target)}", DAMAGED) from None
        else:  # pragma: no cover - FOLDABLE and the branches above agree
            raise self.fail(i, "cannot fold this operator", f"supported: {', '.join(SUPPORTED)}")
        return np.asarray(result)

    def _bound(self, i: int, n: int) -> None:
        if n > MAX_FOLDED:
            raise self.fail(i, f"computes a constant of {n} elements", "only small constants (sizes, shapes) are "
                            "computed while importing; export with constant folding")

    def _constant_attr(self, i: int, a):
        import numpy as np
        from onnx import numpy_helper

        if "value" in a and hasattr(a["value"], "dims"):
            return numpy_helper.to_array(a["value"])
        for key, dtype in (("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64),
                           ("value_ints", np.int64)):
            if key in a:
                return np.array(a[key], dtype=dtype)
        raise self.fail(i, "a Constant of this kind (sparse or strings) is not supported",
                        "supported: dense numeric constants (value, value_float(s), value_int(s))")

    def _slice_constant(self, i, node, a, cs):
        data = cs[0]
        starts, ends, axes, steps = self._slice_args(i, a, cs, data.ndim)
        index = [slice(None)] * data.ndim
        for s, e, ax, st in zip(starts, ends, axes, steps):
            index[ax] = slice(*_clamped(s, e, st, data.shape[ax]))
        return data[tuple(index)]



def _prefixes(path: str):
    """`a.b.c` -> a, a.b, a.b.c"""
    parts = path.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts) + 1)]

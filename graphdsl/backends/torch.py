"""The PyTorch backend: the IR as the Python source of a `torch.nn.Module`, and that source built.

>>> import graphdsl
>>> net = graphdsl.load(text="network tiny { input 3x8x8  conv1: conv(4, 3, pad=1)  relu  flatten  fc: linear(10) }")
>>> print(net.source().split("\\n\\n\\n")[1])
class Tiny(nn.Module):
    \"\"\"Input N x 3 x 8 x 8; output `output` N x 10.\"\"\"
<BLANKLINE>
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, kernel_size=3, padding=1)
        self.fc = nn.Linear(256, 10)
<BLANKLINE>
    def forward(self, x):
        x = self.conv1(x)        # N x 4 x 8 x 8
        x = F.relu(x)            # N x 4 x 8 x 8
        x = torch.flatten(x, 1)  # N x 256
        x = self.fc(x)           # N x 10
        return x
<BLANKLINE>

How the IR maps to PyTorch:

- Every scope of the IR becomes a submodule at exactly its path, so `state_dict` keys are the IR node
  ids plus `.weight`, `.bias`, `.running_mean`...: `layer3.5.conv2.weight`, `features.0.bias`.
- The spec's structure first (graphdsl.backends.torch_layout): one class per block, named after it,
  taking the block's parameters and its input channels; the network's class taking the network's
  parameters as keywords; spec `if`s as Python `if`s (`if self.downsample is not None:`); chains as
  `nn.Sequential`. Where the spec uses what that layout does not translate (it raises Unsupported), the
  layout of the IR below: a group, repeat or block whose contents are a plain chain of modules
  becomes an `nn.Sequential` (blocks only when their items are unlabelled, `features.0`,
  `features.1`...); any other block or scope becomes a generated class named after it, one class per
  distinct structure (instances that differ only in numbers share one; different structures get
  numbered names: `Bottleneck`, `Bottleneck2`), and the network's class refuses parameters other than
  those compiled.
- Ops with parameters or buffers are modules; a labelled op without parameters is a module too
  (`self.relu`, `self.maxpool`); an unlabelled one is a functional call in `forward` (`F.relu(x)`,
  `torch.flatten(x, 1)`), as torchvision writes them. The forms come from the operator registry:
  `Op.torch_module` and `Op.torch_call`.
- `forward` has one line per IR node or submodule call, in IR order, with the static output shape
  as a comment: `x = self.conv1(x)  # N x 64 x 112 x 112`.
- Outputs: `g.graph["outputs"]` lists every output, (name, node) in spec order, and
  `g.graph["training_outputs"]` the names of those returned in training mode only (auxiliary heads;
  where the key is absent, every output after the first). In eval mode `forward` returns the others
  (one tensor, or a tuple in spec order) and does not compute what only the training-only ones need;
  in training mode it returns all of them, a tuple in spec order, when some are training-only
  (torchvision's GoogLeNet). `returned_outputs(g, training)` names what comes back.
- Feature extraction: `generate(net, outputs=[names])` cuts the IR down to the ancestors of the named
  nodes or scopes (`tap_nodes`) and returns a module whose forward gives {name: tensor} in both modes.
- Helper classes (`Op.torch_helpers`: LayerNorm2d, StochasticDepth, Permute) are written once at the
  top of the file where the code calls them; `verify` accepts them only as their exact texts.
- Bare parameters (`Op.bare_parameter`, `scale`): `self.name = nn.Parameter(...)` in the enclosing
  class, the state_dict key the node id itself.
- `inplace=true` is honoured only where the input has no other use (otherwise it would change a
  tensor that is still needed): the generated code computes what the IR says.
- Class parameters: the `__init__` of a shared class takes the constructor numbers that differ
  between its instances, named after the block's arguments where the values match
  (`BasicBlock(planes)`), else `in_channels` or the torch argument name (`out_channels`, `stride`).
- Known limit: submodules named like Python keywords (`def`, `class`: valid .cnn labels) work in
  eager mode, `state_dict`, pickling, torch.export and torch.compile, but torch.fx's own code generator
  (`symbolic_trace` -> GraphModule, `ExportedProgram.module()`) writes `self.def` and fails: a torch
  limitation. `node_shapes` does not depend on it.

API: `generate(net, outputs=None) -> Generated` (source, class name), `source(net, outputs=None)`,
`to_torch(net, device, dtype, outputs=None)`, `build(generated, device, dtype)`,
`run(module, input_shape, device, batch, training)`, `node_shapes(net, module, x)`,
`training_outputs(g)`, `returned_outputs(g, training)`, `tap_nodes(g, names)`.

Nothing of the spec is pasted into code: identifiers come from a `Namespace` that validates and
de-duplicates them, module names that are not identifiers (`0`, `class`) go through
`add_module("0", ...)` / `getattr(self, "0")`, numbers through `repr`, doc strings are escaped,
and the result is parsed and checked before it is returned.

`import torch` happens only in the functions that need it (`to_torch`, `node_shapes`, `run`):
generating source needs no torch.
"""

from __future__ import annotations

import ast as pyast
import builtins
import functools
import hashlib
import heapq
import inspect
import itertools
import keyword
import linecache
import os
import re
import sys
import textwrap
import time
import types
from dataclasses import dataclass, field

import networkx as nx

from ..diagnostics import Diagnostic, SpecError, did_you_mean
from ..evaluate import static_value
from ..ops import REGISTRY
from ..ops.base import is_channels_last, py
from ..passes import inputs_of
from ..values import show
from .scopes import Scope, gc_paused, output_node, scope_tree
from .torch_layout import Unsupported, translate
from .torch_values import MAKE_DIVISIBLE

# ---- names -----------------------------------------------------------------------------------------

# Names that generated code uses itself, or that would shadow what it uses.
RESERVED_GLOBALS = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | frozenset(dir(builtins)) | {
    "torch", "nn", "F", "OrderedDict", "self", "super"}

# Attributes every torch.nn.Module has (dir(nn.Module()) of torch 2.14): a submodule cannot take
# these names (`add_module` refuses them). tests/test_torch_module.py checks this list against torch.
MODULE_ATTRS = frozenset("""
T_destination __annotations__ __call__ __class__ __delattr__ __dict__ __dir__ __doc__ __eq__ __format__
__ge__ __getattr__ __getattribute__ __getstate__ __gt__ __hash__ __init__ __init_subclass__ __le__ __lt__
__module__ __ne__ __new__ __reduce__ __reduce_ex__ __repr__ __setattr__ __setstate__ __sizeof__ __str__
__subclasshook__ __weakref__ _apply _backward_hooks _backward_pre_hooks _buffers _call_impl
_compiled_call_impl _forward_hooks _forward_hooks_always_called _forward_hooks_with_kwargs
_forward_pre_hooks _forward_pre_hooks_with_kwargs _get_backward_hooks _get_backward_pre_hooks _get_name
_is_full_backward_hook _load_from_state_dict _load_state_dict_post_hooks _load_state_dict_pre_hooks
_maybe_warn_non_full_backward_hook _modules _named_members _non_persistent_buffers_set _parameters
_register_load_state_dict_pre_hook _register_state_dict_hook _replicate_for_data_parallel
_save_to_state_dict _slow_forward _state_dict_hooks _state_dict_pre_hooks _version _wrapped_call_impl
add_module apply bfloat16 buffers call_super_init children compile cpu cuda double dump_patches eval
extra_repr float forward get_buffer get_extra_state get_parameter get_submodule half ipu load_state_dict
modules mtia named_buffers named_children named_modules named_parameters parameters register_backward_hook
register_buffer register_forward_hook register_forward_pre_hook register_full_backward_hook
register_full_backward_pre_hook register_load_state_dict_post_hook register_load_state_dict_pre_hook
register_module register_parameter register_state_dict_post_hook register_state_dict_pre_hook
requires_grad_ set_extra_state set_submodule share_memory state_dict to to_empty train training type xpu
zero_grad
""".split())

# ... and what nn.Sequential adds: a Sequential cannot hold modules of these names.
SEQUENTIAL_ATTRS = MODULE_ATTRS | frozenset("""
__add__ __delitem__ __getitem__ __iadd__ __imul__ __iter__ __len__ __mul__ __rmul__ __setitem__
_get_item_by_idx append extend insert pop
""".split())

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class Namespace:
    """Python identifiers for generated code: each valid, not reserved, and claimed once.

    >>> ns = Namespace()
    >>> [ns.claim(n) for n in ("out", "out", "class", "self", "layer1", "layer1", "__import__")]
    ['out', 'out_2', 'class_', 'self_', 'layer1', 'layer1_2', 'import_']
    """

    def __init__(self, reserved=RESERVED_GLOBALS, sep: str = "_"):
        self.reserved = frozenset(reserved)
        self.taken: set[str] = set()
        self.sep = sep
        self.counters: dict[str, int] = {}  # base -> the last suffix tried: names are never given back, so the
        # next free one is never below it (20,000 branches named `out` cost 20,000 tries, not 200 million)

    def usable(self, name: str) -> bool:
        return (bool(_IDENT.match(name)) and not name.startswith("__") and not keyword.iskeyword(name)
                and not keyword.issoftkeyword(name) and name not in self.reserved)

    def claim(self, base: str, fallback: str = "v") -> str:
        """`base` if free, else `base_2`, `base_3`...; invalid or reserved bases are mended first."""
        base = re.sub(r"[^A-Za-z0-9_]", "_", base).strip("_") or fallback
        if base[0].isdigit():
            base = f"{fallback}{self.sep or '_'}{base}"
        if not self.usable(base):
            base += "_"
        name, i = base, 1
        if name in self.taken or not self.usable(name):
            i = self.counters.get(base, 1)
            while name in self.taken or not self.usable(name):
                i += 1
                name = f"{base}{self.sep if self.sep or not base[-1].isdigit() else '_'}{i}"
            self.counters[base] = i
        self.taken.add(name)
        return name


def camel(name: str) -> str:
    """`basic_conv` -> `BasicConv`, `resnet18` -> `Resnet18`, `ResNet` stays."""
    return "".join(p[0].upper() + p[1:] for p in name.split("_") if p)


def _escape(text: str, keep: str) -> str:
    """Backslashes and every unprintable character (but those in `keep`) as Python escapes."""
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch in keep or (ch.isprintable() and ch != "\x7f"):
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


def docstring(text: str, indent: str) -> list[str]:
    r'''A triple-quoted literal whose value is `inspect.cleandoc(text)`, as indented lines.

    >>> print("\n".join(docstring('Has """ and \\o/\n\n    indented', "    ")))
        """Has \"\"\" and \\o/
    <BLANKLINE>
        indented
        """
    '''
    body = _escape(inspect.cleandoc(text).replace("\r\n", "\n"), keep=" \n")
    # a run of three quotes would end the literal, and so would one at the very end: escape those runs
    body = re.sub(r'"+', lambda m: m[0].replace('"', '\\"') if len(m[0]) >= 3 or m.end() == len(body) else m[0],
                  body)
    lines = [_keep_trailing_spaces(line) for line in body.split("\n")]
    if len(lines) == 1:
        return [f'{indent}"""{lines[0]}"""']
    out = [f'{indent}"""{lines[0]}']
    out += [f"{indent}{line}" if line else "" for line in lines[1:]]
    out.append(f'{indent}"""')
    return out


def _keep_trailing_spaces(line: str) -> str:
    """Trailing spaces as `\\x20`: kept in the value, invisible to linters."""
    stripped = line.rstrip(" ")
    return stripped + "\\x20" * (len(line) - len(stripped))


def comment(text: str) -> str:
    """Text safe to put after `#`: one line, every unprintable character escaped."""
    return _escape(text, keep=" ")


def fmt_dims(shape) -> str:
    return " x ".join(["N", *map(str, shape)])


# ---- the scope tree ------------------------------------------------------------------------------------


@dataclass
class Box:
    """A scope of the IR (a container) or one IR node (a leaf), with its interface."""

    path: tuple[str, ...]
    info: dict
    node: str | None = None
    children: list[Box] = field(default_factory=list)
    members: list[str] = field(default_factory=list)
    ins: list[str] = field(default_factory=list)  # values from outside that it reads, in order of use
    outs: list[str] = field(default_factory=list)  # its values used outside (or network outputs), in IR order

    @property
    def name(self) -> str:
        return self.path[-1] if self.path else ""

    @property
    def positional(self) -> bool:
        return self.name.isdigit()


@dataclass
class Line:
    """A line of generated code: `prefix`, a constructor call `expr` whose literal arguments may become
    class parameters, `suffix`; and the output shapes its `# N x C x H x W` comment shows."""

    indent: int
    prefix: str
    expr: pyast.expr | None = None
    suffix: str = ""
    shapes: tuple | None = None


@dataclass
class Instance:
    """One scope rendered as the body of a class, before its class is parametrised."""

    box: Box
    init: list[Line]
    forward: list[Line]
    args: dict  # the block's arguments: names for the class's parameters
    in_shape: tuple | None
    group: Group | None = None
    values: list = field(default_factory=list)  # what it passes for each parameter of its class


@dataclass
class Group:
    """A generated class and the instances that share its structure."""

    name: str
    doc: str | None
    instances: list[Instance] = field(default_factory=list)
    params: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


@dataclass
class Generated:
    """The generated module: its source, the class to instantiate, and for each IR node the number
    of torch.fx nodes its line traces to (see `node_shapes`)."""

    source: str
    class_name: str
    fx_nodes: dict[str, int]
    filename: str


# Sequentials nest inline up to this indentation; deeper ones become classes (Python's parser allows
# at most 200 nested brackets).
MAX_INLINE_DEPTH = 24
# A merge of more inputs is written in pieces of this many (Python's parser nests `a + b + ...` one level a term).
MERGE_PIECE = 64
CLASS_REF = "__graphdsl_class__"  # stands for a child class's constructor until classes are parametrised
# Names of positional constructor arguments, for class parameters that no block argument explains.
ARG_NAMES = {"nn.Conv2d": ("in_channels", "out_channels"), "nn.BatchNorm2d": ("num_features",),
             "nn.BatchNorm1d": ("num_features",), "nn.Linear": ("in_features", "out_features"),
             "nn.LocalResponseNorm": ("size",), "nn.AdaptiveAvgPool2d": ("output_size",),
             "nn.AdaptiveMaxPool2d": ("output_size",), "nn.LayerNorm": ("normalized_shape",),
             "LayerNorm2d": ("normalized_shape",), "StochasticDepth": ("p", "mode"), "nn.ChannelShuffle": ("groups",),
             "Permute": ("dims",), "torch.ones": ("channels",)}


def _merge_shapes(instances: list[tuple]) -> tuple:
    """Shapes of one comment slot over every instance of a class: dims that differ become letters."""
    first = instances[0]
    if all(s == first for s in instances):
        return first
    merged = []
    for k, shape in enumerate(first):
        if any(len(inst) <= k or len(inst[k]) != len(shape) for inst in instances):
            merged.append(("?",))
            continue
        letters = ("HWC" if is_channels_last(shape) else "CHW") if len(shape) == 3 else "F" if len(shape) == 1 else (
            "D" * len(shape))
        merged.append(tuple(d if all(inst[k][i] == d for inst in instances) else letters[i]
                            for i, d in enumerate(shape)))
    return tuple(merged)


def same_value(a, b) -> bool:
    """Whether two values are the same, type included (`1`, `1.0` and `true` differ, as their reprs do).
    Without recursion, and in time bounded by the smaller: a block argument may be a list of thousands,
    or nested deep, and the other side is a constructor's literal.

    >>> same_value((1, (2, 3)), (1, (2, 3))), same_value(1, 1.0), same_value((1,), (True,))
    (True, False, False)
    """
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if x is y:
            continue
        if type(x) is not type(y):
            return False
        if isinstance(x, tuple):
            if len(x) != len(y):
                return False
            stack.extend(zip(x, y))
        elif repr(x) != repr(y):  # scalars: 0.0 and -0.0 differ, as their reprs
            return False
    return True


def _literal(node) -> bool:
    try:
        pyast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError):
        return False
    return True


def _func_name(node) -> str:
    try:
        return pyast.unparse(node)
    except Exception:  # noqa: BLE001 - only a naming hint
        return ""


def _is_class_ref(expr: pyast.expr) -> bool:
    return isinstance(expr, pyast.Call) and isinstance(expr.func, pyast.Name) and expr.func.id == CLASS_REF


def _rewrite(expr: pyast.expr, on_literal, on_class) -> pyast.expr:
    """A copy of a constructor call with each literal argument replaced by `on_literal(hint, node)`
    and each child-class placeholder by `on_class(instance)`, visited in source order."""
    if _is_class_ref(expr):
        return on_class(expr.graphdsl_instance)
    if isinstance(expr, pyast.BinOp):  # `torch.ones(96, 1, 1) * 1e-06` (a bare parameter's initial value)
        sides = [on_literal("arg", x) if _literal(x) else _rewrite(x, on_literal, on_class)
                 for x in (expr.left, expr.right)]
        return pyast.BinOp(sides[0], expr.op, sides[1])
    if not isinstance(expr, pyast.Call):
        return expr
    func = _func_name(expr.func)
    names = ARG_NAMES.get(func, ())
    args = []
    for i, a in enumerate(expr.args):
        if _literal(a):
            args.append(on_literal(names[i] if i < len(names) else "arg", a))
        else:
            args.append(_rewrite(a, on_literal, on_class))
    keywords = []
    for kw in expr.keywords:
        if _literal(kw.value):
            value = on_literal(kw.arg or "arg", kw.value)
        else:
            value = _rewrite(kw.value, on_literal, on_class)
        keywords.append(pyast.keyword(kw.arg, value))
    return pyast.Call(expr.func, args, keywords)


class Generator:
    def __init__(self, net, taps: bool = False):
        self.net = net
        self.g: nx.DiGraph = net.graph
        self.taps = taps  # a feature extractor: forward returns {name: tensor} of every output, in both modes
        named = list(self.g.graph["outputs"])
        self.output_names = [name for name, _ in named]
        self.outputs = [node for _, node in named]
        self.output_set = set(self.outputs)
        training = training_outputs(self.g) if not taps else []
        self.training_only = [name in training for name in self.output_names]
        self.helpers: dict[str, str] = {}  # helper class name -> its source text
        self.globals = Namespace(sep="")
        self.groups: dict[tuple, Group] = {}
        self.group_order: list[Group] = []
        self.fx_nodes: dict[str, int] = {}
        self.diagnostics: list[Diagnostic] = []
        self.imports: set[str] = set()
        self.uses_ordered_dict = False
        self._inputs: dict[str, list[str]] = {}

    # ---- tree ------------------------------------------------------------------------------------------

    def tree(self) -> Box:
        """The IR's scope tree (shared with the diagrams and summaries), as boxes with interfaces."""
        def box(scope: Scope) -> Box:
            children = [box(c) if isinstance(c, Scope) else Box(self.g.nodes[c]["scope"], {"kind": "node"}, node=c)
                        for c in scope.children]
            return Box(scope.path, scope.info, children=children)

        root = box(scope_tree(self.g))
        self._interface(root)
        root.ins = ["input"]
        root.outs = list(self.outputs)
        return root

    def _interface(self, box: Box) -> None:
        if box.node is not None:
            box.members = [box.node]
        else:
            for child in box.children:
                self._interface(child)
                box.members += child.members
        inside = set(box.members)
        seen = set(box.ins)
        for m in box.members:
            for p in self.inputs(m):
                if p not in inside and p not in seen:
                    seen.add(p)
                    box.ins.append(p)
        box.outs = [m for m in box.members
                    if m in self.output_set or any(s not in inside for s in self.g.successors(m))]
        if not box.outs and box.members:  # a result nothing reads: still computed, as the IR counts it
            box.outs = [box.members[-1]]

    # ---- decisions -------------------------------------------------------------------------------------

    def op(self, node: str):
        return REGISTRY[self.g.nodes[node]["op"]]

    def inputs(self, node: str) -> list[str]:
        """inputs_of, sorted once per node (the decisions below ask several times)."""
        found = self._inputs.get(node)
        if found is None:
            found = self._inputs[node] = inputs_of(self.g, node)
        return found

    def attrs(self, node: str) -> dict:
        """The node's attributes, with `inplace` only where writing into the input harms nothing."""
        a = dict(self.g.nodes[node]["attrs"])
        preds = self.inputs(node)
        if a.get("inplace") and not all(self.writable(p) for p in preds):
            a["inplace"] = False
        if self.op(node).accumulates:
            a["inplace"] = self.writable(preds[0])
        return a

    def writable(self, node: str) -> bool:
        """Whether the next op may overwrite `node`'s tensor: nothing else reads it (the network input,
        an output, a second use — also through the views and pass-throughs it came from, identity,
        flatten, ...), and autograd keeps none of it for the backward pass."""
        while True:
            if node == "input" or node in self.output_set or self.g.out_degree(node) > 1:
                return False
            op = self.op(node)
            if not op.aliases_input:
                return op.overwritable
            node = self.inputs(node)[0]

    def in_shapes(self, node: str) -> list[tuple]:
        return [self.g.nodes[p]["shape"] for p in self.inputs(node)]

    def module_form(self, node: str) -> str | None:
        return self.op(node).torch_module(self.attrs(node), self.in_shapes(node))

    def call_form(self, node: str, args: list[str]) -> str | None:
        return self.op(node).torch_call(self.attrs(node), args, self.in_shapes(node))

    def binary_fold(self, node: str, n: int) -> bool:
        """Whether an op of `n` inputs lowers to a chain of `n - 1` binary operations (`a + b + c`)."""
        op = self.op(node)
        return op.merges and op.torch_nodes(self.attrs(node), n) == n - 1

    def has_state(self, node: str) -> bool:
        d = self.g.nodes[node]
        return bool(d.get("params") or d.get("buffers"))

    def sequential(self, box: Box) -> bool:
        """Whether a scope is a plain chain of modules, which nn.Sequential runs as they are."""
        if not box.path or len(box.ins) != 1 or len(box.outs) != 1:
            return False
        names = [c.name for c in box.children]
        if box.info.get("kind") == "block" and names != [str(i) for i in range(len(names))]:
            return False
        if any(n in SEQUENTIAL_ATTRS for n in names):
            return False
        prev = box.ins[0]
        for child in box.children:
            if child.ins != [prev] or len(child.outs) != 1:
                return False
            if child.node is not None and (self.op(child.node).bare_parameter or self.module_form(child.node) is None):
                return False
            prev = child.outs[0]
        return prev == box.outs[0]

    def error(self, message: str, node_or_box, help: str | None = None) -> None:
        if isinstance(node_or_box, Box):
            span = node_or_box.info.get("span")
            node = node_or_box.members[0] if node_or_box.members else None
        else:
            span, node = None, node_or_box
        if span is None and node is not None:
            span = self.g.nodes[node].get("span")
        self.diagnostics.append(Diagnostic(message, span, help))

    def check_module_name(self, box: Box) -> None:
        if box.name in MODULE_ATTRS:
            what = "layer" if box.node is not None else "scope"
            self.error(f"`{box.name}` cannot name a {what} in PyTorch: torch.nn.Module has an attribute "
                       f"`{box.name}`", box, help=f"rename it, e.g. `{box.name}_`")

    @staticmethod
    @functools.lru_cache(maxsize=4096)
    def ctor(form: str) -> pyast.expr:
        """The constructor call `form` as an AST, parsed once per text (a chain of 100,000 equal convs
        parses one); the tree is shared, so nothing may change it in place (`_rewrite` copies)."""
        expr = pyast.parse(form, mode="eval").body
        if not isinstance(expr, pyast.Call):
            raise AssertionError(f"a module constructor must be a call, got {form!r}")
        return expr

    # ---- the spec's structure: a class per block (graphdsl.backends.torch_layout) --------------------------

    def generate_structured(self) -> Generated:
        """The module written after the spec's blocks and parameters; Unsupported where the spec uses what
        that layout does not translate (then `generate` writes one class per distinct structure)."""
        for _, d in self.g.nodes(data=True):
            if d["op"] != "input":
                self.use_helpers(REGISTRY[d["op"]])
                self.imports.update(REGISTRY[d["op"]].torch_imports)
        for name in self.helpers:
            self.globals.claim(name)
        if not self.outputs or all(self.training_only):
            raise Unsupported("every output is training-only")
        self.helpers.setdefault("make_divisible", MAKE_DIVISIBLE)  # written where the code calls it
        classes, self.fx_nodes = translate(self)
        for klass in classes:
            group = Group(klass.name, klass.doc)
            group.lines = layout_text(klass)
            self.group_order.append(group)
        source = self.assemble()
        filename = f"<graphdsl {hashlib.sha1(source.encode()).hexdigest()[:12]}>"
        return Generated(source, classes[-1].name, self.fx_nodes, filename)

    # ---- phase 1: every scope as a class body, grouped by structure ---------------------------------------

    def generate(self) -> Generated:
        g = self.g
        for _, d in g.nodes(data=True):  # helper classes keep their names: claimed before any generated class
            if d["op"] != "input":
                self.use_helpers(REGISTRY[d["op"]])
        for name in self.helpers:
            self.globals.claim(name)
        if self.outputs and all(self.training_only):
            self.error("every output of the network is training-only: in eval mode `forward` would return nothing",
                       self.outputs[0], help="leave at least one output for eval mode")
        base = camel(g.graph["name"]) or "Network"
        root_name = self.globals.claim(base + "Features" if self.taps else base, fallback="Network")
        root = self.tree()
        top = self.render(root)
        root_group = self.root_group = Group(root_name, self.root_doc(), [top])
        top.group = root_group
        self.group_order.append(root_group)
        if self.diagnostics:
            raise SpecError(self.diagnostics, getattr(self.net, "sources", {}))
        for group in self.group_order:
            self.finalize(group)
        source = self.assemble()
        filename = f"<graphdsl {hashlib.sha1(source.encode()).hexdigest()[:12]}>"
        return Generated(source, root_name, self.fx_nodes, filename)

    def child_lines(self, child: Box, indent: int) -> list[Line]:
        """The constructor of a child module, as lines (several for an nn.Sequential)."""
        if child.node is not None:
            self.fx_nodes[child.node] = self.op(child.node).torch_module_nodes(self.attrs(child.node),
                                                                               self.in_shapes(child.node))
            return [Line(indent, "", self.ctor(self.module_form(child.node)), "", (self.g.nodes[child.node]["shape"],))]
        if self.sequential(child) and indent < MAX_INLINE_DEPTH:
            return self.sequential_lines(child, indent)
        inst = self.render(child)
        ref = pyast.Call(pyast.Name(CLASS_REF), [], [])
        ref.graphdsl_instance = inst
        return [Line(indent, "", ref, "", tuple(self.g.nodes[o]["shape"] for o in child.outs))]

    def sequential_lines(self, box: Box, indent: int) -> list[Line]:
        names = [c.name for c in box.children]
        positional = names == [str(i) for i in range(len(names))]
        if not positional:
            self.uses_ordered_dict = True
        lines = [Line(indent, "nn.Sequential(" if positional else "nn.Sequential(OrderedDict([")]
        for child in box.children:
            sub = self.child_lines(child, indent + 1)
            if positional:
                sub[-1].suffix += ","
            else:
                sub[0].prefix = f"({child.name!r}, " + sub[0].prefix
                sub[-1].suffix += "),"
            lines += sub
        lines.append(Line(indent, ")" if positional else "]))"))
        return lines

    def base_name(self, box: Box) -> str:
        if box.info.get("kind") == "block":
            return camel(box.info["block"]) or "Block"
        return camel(box.name) if not box.positional and camel(box.name) else "Group"

    def render(self, box: Box) -> Instance:
        """The class body of a container (the network itself for the root)."""
        g = self.g
        root = not box.path
        local = Namespace()
        var: dict[str, str] = {}
        generic: list[str] = []
        params = []
        for k, node in enumerate(box.ins):
            label = g.nodes[node]["scope"][-1] if g.nodes[node]["scope"] else ""
            v = local.claim("x" if k == 0 or not _IDENT.match(label) else label, fallback="x")
            var[node] = v
            params.append(v)
            if v == "x":
                generic.append(v)

        items = box.children
        gated = self.gated_items(box) if root else set()
        last_use: dict[str, float] = {}
        users: dict[tuple[str, bool], int] = {}  # readers of a value, among the items gated alike
        for i, item in enumerate(items):
            for p in item.ins:
                last_use[p] = i
                users[p, i in gated] = users.get((p, i in gated), 0) + 1
        for o in box.outs:
            last_use[o] = float("inf")
        holds: dict[str, str] = {v: n for n, v in var.items()}

        def free(v: str, i: int) -> bool:
            held = holds.get(v)
            return held is None or last_use.get(held, -1) <= i

        # The generic variables (`x`, `out`, `out_2`...) in order of creation, and which may be free: a
        # variable is free from the item that last reads what it holds. `first_free` finds the first free
        # one in creation order as a scan of them all would, in logarithmic time (a 20,000-way concat keeps
        # 20,000 variables alive).
        rank: dict[str, int] = {}
        waiting: list[tuple[float, int, str]] = []  # (free from item, rank, variable)
        ready: list[tuple[int, str]] = []  # (rank, variable): free now, unless assigned since (checked)

        def make_generic(v: str) -> None:
            rank[v] = len(generic)
            generic.append(v)

        def schedule(v: str) -> None:
            if v in rank:
                held = holds.get(v)
                heapq.heappush(waiting, (-1 if held is None else last_use.get(held, -1), rank[v], v))

        def first_free(i: int, taken: set[str]) -> str | None:
            while waiting and waiting[0][0] <= i:
                _, r, v = heapq.heappop(waiting)
                heapq.heappush(ready, (r, v))
            while ready:
                v = ready[0][1]
                if free(v, i) and v not in taken:
                    return v
                heapq.heappop(ready)  # assigned since (a later entry waits for it), or being assigned now
            return None

        for r, v in enumerate(generic):  # the input `x`
            rank[v] = r
            schedule(v)

        init: list[Line] = [Line(2, "super().__init__()")]
        fwd: list[Line] = [Line(1, f"def forward(self, {', '.join(params)}):")]
        training_block = False
        for i, item in enumerate(items):
            ref = param = None
            if item.node is not None:
                node = item.node
                op = self.op(node)
                module = self.module_form(node)
                call = self.call_form(node, ["x"] * (len(item.ins) + op.bare_parameter))
                labelled = not item.positional and item.name not in MODULE_ATTRS
                if op.bare_parameter:  # `self.layer_scale = nn.Parameter(...)`, used as `self.layer_scale * x`
                    form = op.torch_parameter(self.attrs(node), self.in_shapes(node))
                    if form is None or call is None:
                        self.error(f"operator `{op.name}` has no PyTorch lowering", node,
                                   help="define `torch_parameter` and `torch_call` for it in the operator registry")
                    else:
                        self.check_module_name(item)
                        prefix, suffix = self.assign(item.name, "parameter")
                        init.append(Line(2, prefix, self.ctor(form), suffix))
                    param = self.attr(item.name)
                    self.fx_nodes[node] = op.torch_nodes(self.attrs(node), len(item.ins))
                elif self.has_state(node) or call is None or (module is not None and labelled):
                    if module is None:
                        self.error(f"operator `{op.name}` has no PyTorch " + (
                            "module form" if self.has_state(node) else "lowering"), node,
                            help="define `torch_module` (or `torch_call`) for it in the operator registry")
                    else:
                        self.check_module_name(item)
                        prefix, suffix = self.assign(item.name)
                        init.append(Line(2, prefix, self.ctor(module), suffix))
                    ref = self.attr(item.name)
                    self.fx_nodes[node] = op.torch_module_nodes(self.attrs(node), self.in_shapes(node))
                else:
                    self.fx_nodes[node] = op.torch_nodes(self.attrs(node), len(item.ins))
                self.imports.update(op.torch_imports)
            else:
                self.check_module_name(item)
                sub = self.child_lines(item, 2)
                prefix, suffix = self.assign(item.name)
                sub[0].prefix = prefix + sub[0].prefix
                sub[-1].suffix += suffix
                if len(sub) == 1:
                    sub[0].shapes = None  # forward shows the shape
                init += sub
                ref = self.attr(item.name)

            missing = [p for p in item.ins if p not in var]
            if missing:
                raise AssertionError(f"{'.'.join(item.path)} reads {missing} before they are computed")
            args = [var[p] for p in item.ins]

            # the variables it assigns: `x = f(x)` along a chain, the item's name for a branch
            outs: list[str] = []
            chosen: set[str] = set()
            for k, _ in enumerate(item.outs):
                named = item.node is None and not item.positional and bool(_IDENT.match(item.name))
                first = item.ins[0] if item.ins else None
                v0 = var.get(first)
                choice = None
                if k == 0:
                    if named and first is not None and (users[first, i in gated] > 1 or last_use[first] > i):
                        choice = local.claim(item.name)
                    elif v0 in rank and free(v0, i):
                        choice = v0
                    else:
                        choice = next((var[p] for p in item.ins if var[p] in rank and free(var[p], i)), None)
                    if choice is None and named:
                        choice = local.claim(item.name)
                if choice is None:
                    choice = first_free(i, chosen)
                if choice is None:
                    choice = local.claim("out" if "x" in local.taken else "x")
                    make_generic(choice)
                outs.append(choice)
                chosen.add(choice)
            for o, v in zip(item.outs, outs):
                var[o] = v
                holds[v] = o
                schedule(v)

            pieces: list[str] = []
            if ref is not None:
                expr_text = f"{ref}({', '.join(args)})"
            elif param is None and len(args) > MERGE_PIECE and self.binary_fold(item.node, len(args)):
                # `a + b + ... ` of thousands nests too deep for Python's parser: sum in pieces of MERGE_PIECE,
                # the same number of operations (and of fx nodes, which node_shapes counts)
                partial = local.claim("partial")
                pieces.append(f"{partial} = {self.call_form(item.node, args[:MERGE_PIECE])}")
                rest = args[MERGE_PIECE:]
                while len(rest) > MERGE_PIECE - 1:
                    pieces.append(f"{partial} = {self.call_form(item.node, [partial, *rest[:MERGE_PIECE - 1]])}")
                    rest = rest[MERGE_PIECE - 1:]
                expr_text = self.call_form(item.node, [partial, *rest])
            else:
                expr_text = self.call_form(item.node, args if param is None else [param, *args]) or "None"
            indent = 2
            if i in gated:
                if not training_block:
                    fwd.append(Line(2, "if self.training:"))
                    training_block = True
                indent = 3
            else:
                training_block = False
            fwd += [Line(indent, piece) for piece in pieces]
            shapes = tuple(g.nodes[o]["shape"] for o in item.outs)
            statement = f"{', '.join(outs)} = {expr_text}"
            accumulate = f"{outs[0]}.add_("
            if len(outs) == 1 and expr_text.startswith(accumulate) and expr_text.count(".add_(") == 1:
                statement = f"{outs[0]} += {expr_text[len(accumulate):-1]}"  # as torchvision: `out += identity`
            fwd.append(Line(indent, statement, shapes=shapes))

        if root:
            result = [var.get(o, "x") for o in box.outs] or ["x"]
            if self.taps:
                items_text = ", ".join(f"{name!r}: {v}" for name, v in zip(self.output_names, result))
                fwd.append(Line(2, f"return {{{items_text}}}"))
            else:
                main = [v for v, only in zip(result, self.training_only) if not only] or result[:1]
                if any(self.training_only):
                    fwd.append(Line(2, "if self.training:"))
                    fwd.append(Line(3, f"return {', '.join(result)}"))
                fwd.append(Line(2, f"return {', '.join(main)}"))
        else:
            fwd.append(Line(2, f"return {', '.join(var[o] for o in box.outs)}"))

        in_shape = g.nodes[box.ins[0]]["shape"] if box.ins else None
        inst = Instance(box, init, fwd, dict(box.info.get("args") or {}), in_shape)
        if root:
            return inst
        doc = box.info.get("doc") if box.info.get("kind") == "block" else None
        key = (self.base_name(box), doc, tuple(self.skeleton(ln) for ln in init),
               tuple((ln.indent, ln.prefix, ln.shapes is not None) for ln in fwd))
        group = self.groups.get(key)
        if group is None:
            group = Group(self.globals.claim(key[0], fallback="Block"), doc)
            self.groups[key] = group
            self.group_order.append(group)
        group.instances.append(inst)
        inst.group = group
        return inst

    @staticmethod
    def skeleton(line: Line) -> tuple:
        shape = None
        if line.expr is not None:
            shape = pyast.dump(_rewrite(line.expr, lambda hint, node: pyast.Name("__literal__"),
                                        lambda inst: pyast.Name(f"__class_{inst.group.name}__")))
        return (line.indent, line.prefix, shape, line.suffix, line.shapes is not None)

    def gated_items(self, root: Box) -> set[int]:
        """Items of the network's own forward computed only in training: what only the training-only
        outputs (auxiliary heads) need."""
        aux = [o for o, only in zip(self.outputs, self.training_only) if only]
        if not aux:
            return set()
        g = self.g
        main = [o for o, only in zip(self.outputs, self.training_only) if not only]
        needed = set(main).union(*(nx.ancestors(g, o) for o in main))
        feeding_aux = set(aux).union(*(nx.ancestors(g, o) for o in aux))
        gated_nodes: set[str] = set()
        for n in g:  # in topological order
            if n not in needed and (n in feeding_aux or any(p in gated_nodes for p in g.predecessors(n))):
                gated_nodes.add(n)
        items = root.children
        gated = {i for i, item in enumerate(items) if item.outs and all(o in gated_nodes for o in item.outs)}
        producer = {o: i for i, item in enumerate(items) for o in item.outs}
        changed = True
        while changed:
            changed = False
            for i, item in enumerate(items):
                if i in gated:
                    continue
                for p in item.ins:
                    j = producer.get(p)
                    if j in gated:
                        gated.discard(j)
                        changed = True
        return gated

    def root_doc(self) -> str:
        g = self.g
        outs = g.graph["outputs"]
        io = f"Input {fmt_dims(g.graph['input_shape'])}; "

        def listed(pairs) -> str:
            return ", ".join(f"`{n}` {fmt_dims(g.nodes[node]['shape'])}" for n, node in pairs)

        main = [o for o, only in zip(outs, self.training_only) if not only]
        aux = [o for o, only in zip(outs, self.training_only) if only]
        everything = f"({', '.join(n for n, _ in outs)})"
        if self.taps:
            ours = [f"Features of the network `{g.graph['name']}` (a feature extractor). {io}features "
                    f"{listed(outs)}.", "`forward` computes only what these need and returns the dict "
                    "{name: tensor} of them, in eval and training mode alike."]
        elif len(outs) <= 1:
            name, node = outs[0] if outs else ("output", "input")
            ours = [io + f"output `{name}` {fmt_dims(g.nodes[node]['shape'])}."]
        elif not aux:
            ours = [io + f"outputs {listed(outs)}.", f"`forward` returns the tuple {everything}."]
        elif len(main) == 1:
            io += f"main output `{main[0][0]}` {fmt_dims(g.nodes[main[0][1]]['shape'])}; auxiliary outputs "
            ours = [io + listed(aux) + ".",
                    "In eval mode `forward` computes and returns the main output alone; in training mode it also "
                    f"computes the auxiliary ones and returns the tuple {everything}, as torchvision's GoogLeNet "
                    "does."]
        else:
            ours = [io + f"outputs {listed(main)}; training-only outputs {listed(aux)}.",
                    f"In eval mode `forward` returns the tuple ({', '.join(n for n, _ in main)}); in training mode "
                    f"it also computes the training-only outputs and returns the tuple {everything}."]
        spec = [inspect.cleandoc(g.graph["doc"])] if g.graph.get("doc") else []
        return "\n\n".join([*spec, *(textwrap.fill(p, 100) for p in ours)])

    @staticmethod
    def attr(name: str) -> str:
        """How forward refers to submodule `name`."""
        if Namespace(reserved=()).usable(name):
            return f"self.{name}"
        return f"getattr(self, {name!r})"

    @staticmethod
    def assign(name: str, kind: str = "module") -> tuple[str, str]:
        """What goes around a constructor to make it submodule (or parameter, `kind`) `name`."""
        if Namespace(reserved=()).usable(name):
            return f"self.{name} = ", ""
        return f"self.{'add_module' if kind == 'module' else 'register_parameter'}({name!r}, ", ")"

    def use_helpers(self, op) -> None:
        """Note the helper classes an op may use; `assemble` writes those the code calls."""
        for text in op.torch_helpers:
            name = helper_name(text)
            if self.helpers.setdefault(name, text) != text:
                raise AssertionError(f"two different helper classes named {name}")

    # ---- phase 2: parameters of each class, then the text -------------------------------------------------

    def holes(self, inst: Instance) -> list[tuple[str, object]]:
        """(name hint, value) of every literal constructor argument of an instance, in source order; a
        child class's parameters count as the literals of its constructor call."""
        found: list[tuple[str, object]] = []

        def literal(hint, node):
            found.append((hint, pyast.literal_eval(node)))
            return node

        def child(sub: Instance):
            found.extend(zip(sub.group.params, sub.values))
            return pyast.Name("_")

        for line in inst.init:
            if line.expr is not None:
                _rewrite(line.expr, literal, child)
        return found

    def finalize(self, group: Group) -> None:
        insts = group.instances
        # one instance (the network's own class, always): nothing varies, so nothing to look for
        per_inst = [self.holes(inst) for inst in insts] if len(insts) > 1 else [[]]
        n = len(per_inst[0])
        if any(len(h) != n for h in per_inst):
            raise AssertionError(f"instances of {group.name} differ in structure")
        vectors: dict[tuple, int] = {}
        chosen: list[int] = []  # the first hole of each parameter
        hole_param: dict[int, int] = {}
        for k in range(n):
            vec = tuple(repr(h[k][1]) for h in per_inst)
            if len(set(vec)) == 1:
                continue
            if vec not in vectors:
                vectors[vec] = len(chosen)
                chosen.append(k)
            hole_param[k] = vectors[vec]
        names = [self.param_name(insts, per_inst, k) for k in chosen]
        block_args = list(insts[0].args)
        rank = {p: (0 if names[p] in ("in_channels", "in_features") else
                    1 + block_args.index(names[p]) if names[p] in block_args else 1 + len(block_args), p)
                for p in range(len(chosen))}
        order = sorted(range(len(chosen)), key=lambda p: rank[p])
        ns = Namespace(reserved=RESERVED_GLOBALS | {g.name for g in self.group_order})  # no class shadowed
        final = {p: ns.claim(names[p], fallback="arg") for p in order}
        group.params = [final[p] for p in order]
        for inst, h in zip(insts, per_inst):
            inst.values = [h[chosen[p]][1] for p in order]

        # the text, from the first instance with parameters in place of what varies
        first = insts[0]
        counter = iter(range(n)) if hole_param else itertools.count()  # holes are counted only to be replaced
        same_text: dict[int, str] = {}  # with nothing to replace, a constructor shared by many lines (ctor) is
        # written once

        def literal(hint, node):
            k = next(counter)
            return pyast.Name(final[hole_param[k]]) if k in hole_param else node

        def child(sub: Instance):
            args = []
            for _ in sub.group.params:
                k = next(counter)
                args.append(pyast.Name(final[hole_param[k]]) if k in hole_param else
                            pyast.parse(py(sub.values[len(args)]), mode="eval").body)
            return pyast.Call(pyast.Name(sub.group.name), args, [])

        init = []
        for line in first.init:
            code = line.prefix
            if line.expr is not None and not hole_param and not _is_class_ref(line.expr):
                text = same_text.get(id(line.expr))
                if text is None:
                    text = same_text[id(line.expr)] = pyast.unparse(line.expr)
                code += text
            elif line.expr is not None:
                code += pyast.unparse(_rewrite(line.expr, literal, child))
            init.append(Line(line.indent, code + line.suffix, shapes=line.shapes))
        signature = ", ".join(["self", *group.params])
        if group is self.root_group:
            keywords, guard = self.fixed_parameters()
            signature = ", ".join(["self", *keywords])
            init[1:1] = guard
        init.insert(0, Line(1, f"def __init__({signature}) -> None:"))
        group.lines = self.class_text(group, init, first.forward)

    def fixed_parameters(self) -> tuple[list[str], list[Line]]:
        """This layout bakes the network's parameters in: the network class takes them as keywords all the
        same, and refuses values other than those compiled (a clear error, not a wrong module)."""
        if self.taps:
            return [], []
        names, values = [], []
        for name, value in (self.g.graph.get("params") or {}).items():
            try:
                text = py(tuple(value) if isinstance(value, list) else value)
            except TypeError:
                continue  # a symbol (`global`): not a Python value
            if Namespace(reserved=RESERVED_GLOBALS | {"self"}).usable(name):
                names.append(name)
                values.append(text)
        if not names:
            return [], []
        lhs = ", ".join(names) + ("," if len(names) == 1 else "")
        rhs = ", ".join(values) + ("," if len(values) == 1 else "")
        message = (f"this module was generated for ({lhs}) = ({rhs}); for other values regenerate it: "
                   "graphdsl compile -D name=value")
        return (["*", *(f"{n}={v}" for n, v in zip(names, values))],
                [Line(2, f"if ({lhs}) != ({rhs}):"), Line(3, f"raise ValueError({message[:message.index(';') + 1]!r}"),
                 Line(3, f"                 {message[message.index(';') + 1:]!r})")])

    @staticmethod
    def param_name(insts: list[Instance], per_inst: list, k: int) -> str:
        values = [h[k][1] for h in per_inst]
        for arg in insts[0].args:
            if all(arg in i.args and same_value(i.args[arg], v) for i, v in zip(insts, values)):
                return arg
        for i, v in zip(insts, values):
            if not (i.in_shape and same_value(i.in_shape[0], v) and len(i.in_shape) == len(insts[0].in_shape)):
                break
        else:
            return "in_channels" if len(insts[0].in_shape) == 3 else "in_features"
        return per_inst[0][k][0] or "arg"

    def class_text(self, group: Group, init: list[Line], forward: list[Line]) -> list[str]:
        lines = [f"class {group.name}(nn.Module):"]
        if group.doc:
            lines += docstring(group.doc, "    ")
            lines.append("")
        slots = [[ln.shapes for ln in (*inst.init, *inst.forward) if ln.shapes is not None] for inst in group.instances]
        merged = iter([_merge_shapes([s[k] for s in slots]) for k in range(len(slots[0]))])
        for part in (init, forward):
            codes = ["    " * ln.indent + ln.prefix for ln in part]
            width = min(max((len(c) for c, ln in zip(codes, part) if ln.shapes is not None), default=0), 80)
            for c, ln in zip(codes, part):
                if ln.shapes is None:
                    lines.append(c)
                else:
                    shapes = next(merged)
                    lines.append(f"{c.ljust(width)}  # {comment(', '.join(fmt_dims(s) for s in shapes))}")
            lines.append("")
        return lines[:-1]

    # ---- the file ---------------------------------------------------------------------------------------

    def assemble(self) -> str:
        g = self.g
        file = os.path.basename(str(g.graph.get("file") or "<string>"))
        head = f"PyTorch module of the network `{g.graph['name']}`, generated by graphdsl from {file}."
        params = g.graph.get("params") or {}
        defaults = {p.name: static_value(p.default, None) for p in getattr(g.graph.get("definition"), "params", ())
                    if p.default is not None}
        overrides = {k: v for k, v in (g.graph.get("overrides") or {}).items()
                     if k not in defaults or not same_value(defaults[k], v)}
        shown = "SPEC.cnn" if file.startswith("<") else file  # a spec given as text has no file name
        command = " ".join(["graphdsl compile", shown, "--network", g.graph["name"],
                            *(f"-D {k}={show(v)}" for k, v in overrides.items()),
                            *(["--inference"] if g.graph.get("inference") is not None else [])])
        more = [pack(["Regenerate it rather than editing it:", f"`{command}`."], " ")]
        if params:
            values = [f"{k}={show(v)}" for k, v in params.items()]
            more.append(pack(["Network parameters:", *[v + "," for v in values[:-1]], values[-1] + "."], " "))
        out = docstring(head + "\n\n" + "\n".join(more), "")
        classes = "\n".join(line for group in self.group_order for line in ("", "", *group.lines))
        helpers = [textwrap.dedent(text).strip("\n") for name, text in self.helpers.items()
                   if re.search(rf"(?<![\w.]){re.escape(name)}\(", classes)]
        text_body = "".join(f"\n\n{h}\n" for h in helpers) + classes
        imports = []
        if re.search(r"(?<![\w.])math\.(ceil|floor)\(", text_body):  # spec `ceil`/`floor` (torch_values)
            imports += ["import math", ""]
        if self.uses_ordered_dict:
            imports += ["from collections import OrderedDict", ""]
        if re.search(r"\btorch\.", text_body):
            imports.append("import torch")
        if re.search(r"\bF\.", text_body):
            imports.append("import torch.nn.functional as F")
        imports.append("from torch import nn")
        imports += sorted(self.imports)
        source = "\n".join([*out, "", *imports, text_body]) + "\n"
        self.verify(source, helpers)
        return source

    @staticmethod
    def verify(source: str, helpers=()) -> None:
        """The source parses, and holds only imports and class definitions at the top (defence in depth);
        the classes hold only `__init__` and `forward`, but for the operators' helper classes, which must be
        exactly their texts."""
        tree = pyast.parse(source)
        known = {}
        for text in helpers:
            helper = pyast.parse(textwrap.dedent(text)).body[0]
            known[helper.name] = pyast.dump(helper)
        for i, stmt in enumerate(tree.body):
            if isinstance(stmt, (pyast.ClassDef, pyast.FunctionDef)) and stmt.name in known and pyast.dump(
                    stmt) == known[stmt.name]:
                continue
            ok = isinstance(stmt, (pyast.Import, pyast.ImportFrom, pyast.ClassDef)) or (
                i == 0 and isinstance(stmt, pyast.Expr) and isinstance(stmt.value, pyast.Constant))
            if not ok:
                raise AssertionError(f"generated code has an unexpected statement at line {stmt.lineno}")
            if isinstance(stmt, pyast.ClassDef):
                for sub in stmt.body:
                    if not (isinstance(sub, pyast.FunctionDef) and sub.name in ("__init__", "forward")) and not (
                            isinstance(sub, pyast.Expr) and isinstance(sub.value, pyast.Constant)):
                        raise AssertionError(f"generated class {stmt.name} has an unexpected member")


@functools.cache
def helper_name(text: str) -> str:
    """The class an operator's helper text defines."""
    tree = pyast.parse(textwrap.dedent(text))
    if len(tree.body) != 1 or not isinstance(tree.body[0], (pyast.ClassDef, pyast.FunctionDef)):
        raise AssertionError("a helper text must define exactly one class (or function)")
    return tree.body[0].name


def layout_text(klass) -> list[str]:
    """The text of a class of the structured layout (graphdsl.backends.torch_layout.Klass)."""
    base = "nn.Sequential" if klass.kind == "sequential" else "nn.Module"
    lines = [f"class {klass.name}({base}):"]
    if klass.doc:
        lines += docstring(klass.doc, "    ")
        lines.append("")
    lines += _signature(klass.signature)
    parts = [klass.init] if klass.kind == "sequential" else [klass.init, [(1, "def forward(self, x):", None),
                                                                            *klass.forward]]
    for k, part in enumerate(parts):
        codes = ["    " * indent + text for indent, text, _ in part]
        part = [(i, text, shapes if shapes and any(isinstance(d, int) for sh in shapes for d in sh) else None)
                for i, text, shapes in part]
        width = min(max((len(c) for c, (_, _, shapes) in zip(codes, part) if shapes is not None), default=0), 80)
        for c, (_, _, shapes) in zip(codes, part):
            if shapes is None:
                lines += wrap(c)
            else:
                note = comment(', '.join(fmt_dims(sh) for sh in shapes))
                line = f"{c.ljust(width)}  # {note}"
                if len(line) > 120:  # the shape on its own line above, the code as wide as it is
                    lines.append(" " * (len(c) - len(c.lstrip())) + f"# {note}")
                    lines += wrap(c)
                else:
                    lines.append(line)
        if k + 1 < len(parts):
            lines.append("")
    return lines


def _signature(params: list[str]) -> list[str]:
    """`def __init__(self, ...) -> None:`, wrapped at 120 columns."""
    return wrap("    def __init__(" + ", ".join(["self", *params]) + ") -> None:")


def pack(words: list[str], sep: str, width: int = 100) -> str:
    """`words` joined by `sep` into lines of at most `width` where they fit; a word is never split (a value
    stays whole on its line, as the spec would write it)."""
    lines = [words[0]]
    for w in words[1:]:
        if len(lines[-1]) + len(sep) + len(w) > width:
            lines.append(w)
        else:
            lines[-1] += sep + w
    return "\n".join(lines)


def wrap(line: str, width: int = 120) -> list[str]:
    """A line of code broken after commas, each continuation aligned with the bracket it is in.

    >>> wrap("f(aaa, g(bbb, ccc), 'd, e')", 16)
    ['f(aaa,', '  g(bbb, ccc),', "  'd, e')"]
    """
    out = []
    base = None  # a continuation line is inside the bracket of the line before
    while len(line) > width:
        open_at: list[int] = []
        quote = None
        best = None
        for i, ch in enumerate(line):
            if quote:
                if ch == "\\":
                    continue
                if ch == quote and line[i - 1] != "\\":
                    quote = None
            elif ch in "'\"":
                quote = ch
            elif ch in "([{":
                open_at.append(i)
            elif ch in ")]}":
                if open_at:
                    open_at.pop()
            elif ch == "," and (open_at or base is not None) and line[i + 1:i + 2] == " " and i < width and (
                    best is None or len(open_at) <= best[2]):  # the outermost bracket, then the last comma
                best = (i, open_at[-1] if open_at else base, len(open_at))
            if i >= width and best is not None:
                break
        if best is None:
            break
        i, column, _ = best
        base = column
        out.append(line[:i + 1])
        line = " " * (column + 1) + line[i + 2:]
    out.append(line)
    return out


# ---- outputs --------------------------------------------------------------------------------------------


def training_outputs(g: nx.DiGraph) -> list[str]:
    """The names of the outputs returned in training mode only (auxiliary heads): the IR's
    `g.graph["training_outputs"]`; where the IR does not record it, every output after the first."""
    names = g.graph.get("training_outputs")
    if names is None:
        return [name for name, _ in g.graph["outputs"][1:]]
    return list(names)


def returned_outputs(g: nx.DiGraph, training: bool) -> list[str]:
    """The output names, in order, of what the generated `forward` returns in that mode: in eval mode the
    outputs that are not training-only; in training mode all of them."""
    only = set(training_outputs(g))
    return [name for name, _ in g.graph["outputs"] if training or name not in only]


# ---- feature extraction ------------------------------------------------------------------------------------


class TapError(KeyError):
    """A tap names no layer or scope of the network."""

    def __str__(self) -> str:
        return str(self.args[0])


def tap_nodes(g: nx.DiGraph, names) -> list[tuple[str, str]]:
    """(name, node) for each tap: a node id (`layer2.1.conv2`), `input`, or a scope path (`layer2`), which
    stands for its output node (the last member whose result leaves the scope). Raises TapError."""
    if isinstance(names, str):
        names = [names]
    names = list(names)
    if not names:
        raise TapError("give at least one layer or scope to tap")
    members: dict[str, list[str]] = {}
    for n, d in g.nodes(data=True):
        if d["op"] != "input":
            for k in range(1, len(d["scope"])):
                members.setdefault(".".join(d["scope"][:k]), []).append(n)
    found = []
    for name in names:
        if not isinstance(name, str):
            raise TapError(f"a tap is the name of a layer or scope, not {type(name).__name__} {name!r}")
        if name in g:
            found.append((name, name))
        elif name in members:
            found.append((name, output_node(g, members[name])))
        else:
            hint = did_you_mean(name, [n for n in g if n != "input"] + list(members), "layers and scopes")
            where = f"network `{g.graph['name']}` has no layer or scope `{name}`"
            raise TapError(where + (f"; {hint}" if hint else ""))
    return list(dict.fromkeys(found))


def tapped_graph(g: nx.DiGraph, taps: list[tuple[str, str]]) -> nx.DiGraph:
    """The IR cut down to what the taps need (their ancestors), in IR order, with the taps as outputs."""
    keep = {"input"}
    for _, node in taps:
        keep |= nx.ancestors(g, node) | {node}
    cut = nx.DiGraph()
    cut.graph.update(g.graph)
    cut.add_nodes_from((n, d) for n, d in g.nodes(data=True) if n in keep)
    cut.add_edges_from((u, v, d) for u, v, d in g.edges(data=True) if u in keep and v in keep)
    cut.graph["outputs"] = list(taps)
    cut.graph["training_outputs"] = []
    return cut


def generate(net, outputs=None) -> Generated:
    """The generated module for a checked Network. Raises SpecError where PyTorch cannot express it.
    With `outputs` (layer or scope names, see `tap_nodes`), a feature extractor: its forward returns
    {name: tensor} and computes only what those need."""
    with gc_paused():
        if outputs is None:
            try:
                return Generator(net).generate_structured()
            except Unsupported:
                pass  # one class per distinct structure, as the IR has it
            except (SpecError, RecursionError, ValueError, TypeError, KeyError, IndexError, AttributeError):
                pass  # a spec the translation trips on gets the per-structure layout (tests call it directly)
            return Generator(net).generate()
        cut = tapped_graph(net.graph, tap_nodes(net.graph, outputs))
        return Generator(types.SimpleNamespace(graph=cut, sources=getattr(net, "sources", {})), taps=True).generate()


def source(net, outputs=None) -> str:
    """The Python source of the nn.Module for `net` (what `Network.source()` returns)."""
    return generate(net, outputs).source


# ---- building and running (these import torch) ------------------------------------------------------------


def load_generated(gen: Generated) -> types.ModuleType:
    """Execute the generated source as a module (cached by content), registered in sys.modules so that
    instances pickle and deep-copy within the process, and in linecache so tracebacks show the code."""
    digest = hashlib.sha1(gen.source.encode()).hexdigest()[:16]
    name = f"graphdsl_generated_{digest}"
    module = sys.modules.get(name)
    if module is None:
        module = types.ModuleType(name)
        module.__file__ = gen.filename
        linecache.cache[gen.filename] = (len(gen.source), None, gen.source.splitlines(True), gen.filename)
        exec(compile(gen.source, gen.filename, "exec"), module.__dict__)  # noqa: S102 - our generated code
        sys.modules[name] = module
    return module


def build(gen: Generated, device=None, dtype=None):
    """An instance of the generated module's network class (fresh random weights), moved to
    `device` and `dtype` (a torch.dtype or its name, "float64") if given."""
    import torch

    module = getattr(load_generated(gen), gen.class_name)()
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    if device is not None or dtype is not None:
        module = module.to(device=device, dtype=dtype)
    return module


def to_torch(net, device=None, dtype=None, outputs=None):
    """An nn.Module for `net`, built from the generated source, moved to `device` and `dtype` if given;
    with `outputs`, the feature extractor of those layers or scopes (see `generate`)."""
    return build(generate(net, outputs), device, dtype)


class DeviceError(RuntimeError):
    """The requested device is not there (no CUDA, torch not installed)."""


def check_device(device: str) -> None:
    """Raise DeviceError, with what to do, unless torch is installed and `device` is usable."""
    try:
        import torch
    except ImportError as e:
        raise DeviceError(f"PyTorch is not installed ({e}); install it with `pip install graphdsl[torch]`") from None
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError("CUDA is not available here (torch.cuda.is_available() is false); use --device cpu")


def run(module, input_shape, device: str = "cpu", batch: int = 1, training: bool = False):
    """One forward pass of `module` on a random batch on `device`, in training or eval mode; returns
    the output shapes (batch included) and the seconds the pass took: those `forward` returns in that
    mode (`returned_outputs`), in order; a feature extractor's dict gives its values in order."""
    import torch

    module.train(training)
    x = torch.randn(batch, *input_shape, device=device)
    with torch.set_grad_enabled(training):
        start = time.perf_counter()
        out = module(x)
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    outs = tuple(out.values()) if isinstance(out, dict) else out if isinstance(out, tuple) else (out,)
    return [tuple(o.shape) for o in outs], seconds


def node_shapes(net, module, x) -> dict[str, tuple[int, ...]]:
    """The runtime output shape (without the batch) of every IR node of `net`, `input` included,
    running `module` (from `net.to_torch()`) on the batch `x`.

    The module is traced with torch.fx in training mode (so that auxiliary branches are in the graph)
    and the traced graph is interpreted node by node in eval mode (running statistics: any batch size
    works). This relies on the generated `forward` being one line per IR node, in IR order, each line
    tracing to `Op.torch_nodes` fx nodes (one, for all but n-ary `add`); the counts are checked. The
    module's train/eval flags are restored afterwards. The graph is interpreted on the module itself,
    not turned into an fx.GraphModule, so that modules named like Python keywords (`def`) work too.
    """
    import torch
    import torch.fx

    gen = generate(net)
    flags = [(m, m.training) for m in module.modules()]
    results: dict = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            results[n] = out
            return out

    try:
        module.train()
        graph = torch.fx.Tracer().trace(module)
        module.eval()
        with torch.no_grad():
            Recorder(module, graph=graph).run(x)
    finally:
        for m, flag in flags:
            m.training = flag
    fx = [n for n in graph.nodes if n.op in ("call_module", "call_function", "call_method")]
    order = [n for n in net.graph if n != "input"]
    expected = sum(gen.fx_nodes[n] for n in order)
    if len(fx) != expected:
        raise AssertionError(f"the traced module has {len(fx)} operations, the IR {expected}")
    shapes = {"input": tuple(x.shape[1:])}
    k = 0
    for n in order:
        if gen.fx_nodes[n] == 0:  # traced to nothing (stochastic depth with p = 0): its input passes through
            shapes[n] = shapes[inputs_of(net.graph, n)[0]]
            continue
        k += gen.fx_nodes[n]
        shapes[n] = tuple(results[fx[k - 1]].shape[1:])
    return shapes

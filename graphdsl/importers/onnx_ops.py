"""The ONNX front end's operators: one method per ONNX operator, each making graphdsl layers.

Each `op_<OpType>(i, node, attributes)` reads its inputs (`self.tensor(i, k)`: a tensor computed from
the network's input, a `Value`; `self.constant(i, k)`: an initializer or folded constant), checks
them against the operator's rules (a Conv weight is out x in/group x kh x kw; padding is symmetric;
pooling pads at most half the kernel), computes the output shape and makes the layer with
`self.emit`. What graphdsl cannot express is an ImportFailure at the node (`self.fail`), naming what
is supported. Mixed into the importer of onnx_model.py.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

BATCH = 2 ** 31 - 1  # the batch size in folded shape arithmetic when the file leaves it open
MAX_DIM = 1 << 24  # any one dimension of a value
DAMAGED = "the file is damaged or inconsistent; re-export it"
DOTTED = re.compile(r"[A-Za-z_0-9]+(\.[A-Za-z_0-9]+)*")  # a module path: features.1.0.layer_scale
SUPPORTED = ("Conv", "BatchNormalization", "Relu", "Clip (0..6 or 0..)", "Sigmoid", "HardSigmoid", "HardSwish",
             "Tanh", "LeakyRelu", "Elu", "Gelu", "x * Sigmoid(x) (silu)", "MaxPool", "AveragePool",
             "GlobalAveragePool", "GlobalMaxPool", "ReduceMean/ReduceMax over H, W", "Gemm", "MatMul (+ Add)",
             "Flatten", "Reshape to N x -1", "Squeeze of 1x1", "Concat (channels)", "Add", "Mul",
             "Mul by a C x 1 x 1 initializer (layer scale)", "Dropout",
             "the channel shuffle (Reshape, Transpose [0, 2, 1, 3, 4], Reshape)", "Split (channels)",
             "Transpose [0, 2, 3, 1] to channels-last and [0, 3, 1, 2] back",
             "LayerNormalization (last axis)", "x * 0.5 * (1 + Erf(x / sqrt 2)) (gelu)",
             "Resize", "Upsample", "Softmax", "LRN", "Identity", "Pad (channels)", "Slice (::s on H, W; channels)",
             "Constant and shape arithmetic (Shape, Gather, Unsqueeze, Squeeze, Concat, Slice, Cast, Add, Sub, "
             "Mul, Div, Reshape)")


def _attrs(node) -> dict:
    from onnx import helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode("utf-8", "replace") if isinstance(v, bytes) else v
    return out


def _pair(v):
    v = tuple(int(x) for x in v)
    return v[0] if len(v) == 2 and v[0] == v[1] else v


def _shape_text(shape) -> str:
    return "x".join(str(d) for d in shape) if len(shape) else "a scalar"


def _float(v) -> float:
    """A float32 attribute as a person writes it: 9.999999747e-06 is 1e-05."""
    import numpy as np

    return float(repr(np.float32(v)).removeprefix("np.float32(").removesuffix(")"))


@dataclass
class Value:
    """A tensor computed from the network's input: the layer that computes it and its shape (no batch)."""

    layer: str
    shape: tuple


class Operators:
    """The operators, as methods of the importer (onnx_model._Importer)."""

    def _slice_args(self, i, a, cs, rank):
        import numpy as np

        if self.opset < 10 or len(cs) < 3:
            starts, ends = a.get("starts"), a.get("ends")
            axes, steps = a.get("axes"), None
        else:
            starts, ends = cs[1], cs[2]
            axes = cs[3] if len(cs) > 3 else None
            steps = cs[4] if len(cs) > 4 else None
        if starts is None or ends is None:
            raise self.fail(i, "no starts or ends", DAMAGED)
        starts, ends = [int(x) for x in np.ravel(starts)], [int(x) for x in np.ravel(ends)]
        axes = [int(x) % rank for x in np.ravel(axes)] if axes is not None else list(range(len(starts)))
        steps = [int(x) for x in np.ravel(steps)] if steps is not None else [1] * len(starts)
        if not len(starts) == len(ends) == len(axes) == len(steps) or any(s == 0 for s in steps):
            raise self.fail(i, "inconsistent starts, ends, axes and steps", DAMAGED)
        return starts, ends, axes, steps

    # -- convolution, normalisation, linear

    def _pads(self, i, a, size, kernel, strides, dilations):
        """Symmetric padding (h, w) from `pads` or `auto_pad`; asymmetric padding is an error."""
        auto = a.get("auto_pad", "NOTSET")
        if auto == "VALID":
            return (0, 0)
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            pads = []
            for n, k, s, d in zip(size, kernel, strides, dilations):
                total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
                if total % 2:
                    raise self.fail(i, f"auto_pad={auto} pads {total} rows or columns, one side more than the other",
                                    "graphdsl pads both sides alike; export with explicit symmetric pads")
                pads.append(total // 2)
            return tuple(pads)
        if auto != "NOTSET":
            raise self.fail(i, f"auto_pad={auto!r} is not an ONNX padding mode",
                            "ONNX pads with NOTSET (the pads attribute), SAME_UPPER, SAME_LOWER or VALID")
        pads = list(a.get("pads", [0, 0, 0, 0]))
        if len(pads) != 4 or any(p < 0 for p in pads):
            raise self.fail(i, f"pads {pads} are not four non-negative numbers", DAMAGED)
        if pads[0] != pads[2] or pads[1] != pads[3]:
            raise self.fail(i, f"asymmetric padding (top {pads[0]}, left {pads[1]}, bottom {pads[2]}, right "
                               f"{pads[3]}) is not supported", "graphdsl pads both sides alike (as torch.nn.Conv2d); "
                            "export with symmetric padding")
        return (pads[0], pads[1])

    def _spatial(self, i, x: Value, what: str) -> tuple:
        if len(x.shape) != 3:
            raise self.fail(i, f"only 2-D {what} on N x C x H x W is supported, the input is "
                               f"N x {_shape_text(x.shape)}", f"graphdsl's {what} takes images (C x H x W)")
        return x.shape

    def _weight(self, i, k, what="the weight"):
        import numpy as np

        w = self.constant(i, k, what=what)
        if w is None:
            raise self.fail(i, f"{what} is missing", DAMAGED)
        if not np.issubdtype(w.dtype, np.floating):
            raise self.fail(i, f"{what} `{self.nodes[i].input[k]}` is not a float tensor",
                            "export the model with float weights (quantized models are not supported)")
        return w

    def _bias(self, i, k, out: int, weight_name: str):
        """The bias as a float32 vector of `out`, or None; the zero bias torch's exporter gives a bias-less
        conv (a constant named `val_5`, not `MODULE.bias`) counts as none."""
        import numpy as np

        node = self.nodes[i]
        if k >= len(node.input) or not node.input[k]:
            return None
        b = self._weight(i, k, "the bias")
        if b.size != out or b.ndim > 2 or (b.ndim == 2 and 1 not in b.shape):
            raise self.fail(i, f"the bias `{node.input[k]}` is {_shape_text(b.shape)}, the layer has {out} outputs",
                            DAMAGED)
        name = node.input[k]
        if weight_name.endswith(".weight") and not name.endswith(".bias") and not np.any(b):
            return None
        return np.array(b.reshape(out), dtype=np.float32)

    def op_Conv(self, i, node, a):
        import numpy as np

        x, extra = self._padded(i)
        c, h, w = self._spatial(i, x, "convolution")
        weight = self._weight(i, 1)
        group = int(a.get("group", 1))
        if weight.ndim != 4:
            raise self.fail(i, f"the weight `{node.input[1]}` is {_shape_text(weight.shape)}, not out x in x kh x kw",
                            "graphdsl's convolutions are 2-D: the weight is out x in/group x kh x kw")
        out, per_group, kh, kw = weight.shape
        # the group count first: a weight's shape is only checked against a group count that can be
        if group < 1:
            raise self.fail(i, f"group={group} is not a positive number", "a convolution has 1 group or more; "
                            + DAMAGED)
        if c % group or out % group:
            raise self.fail(i, f"group={group} does not divide its {c} input channels and {out} outputs",
                            "the group count divides both the channels and the outputs; " + DAMAGED)
        if per_group * group != c:
            raise self.fail(i, f"the weight `{node.input[1]}` is {_shape_text(weight.shape)}, but a convolution of "
                               f"{c} channels in {group} group{'s' if group != 1 else ''} needs "
                               f"{out}x{c // group}x{kh}x{kw}", DAMAGED)
        if "kernel_shape" in a and tuple(a["kernel_shape"]) != (kh, kw):
            raise self.fail(i, f"kernel_shape {list(a['kernel_shape'])} disagrees with the weight "
                               f"{_shape_text(weight.shape)}", DAMAGED)
        strides, dil = tuple(a.get("strides", (1, 1))), tuple(a.get("dilations", (1, 1)))
        if len(strides) != 2 or len(dil) != 2 or min(strides + dil) < 1:
            raise self.fail(i, f"strides {list(strides)} / dilations {list(dil)} are not two positive numbers",
                            "a 2-D convolution moves by at least 1 on each axis; " + DAMAGED)
        pads = tuple(p + e for p, e in zip(self._pads(i, a, (h, w), (kh, kw), strides, dil), extra))
        shape = (out, *(_sliding(n, k, s, p, d) for n, k, s, p, d in zip((h, w), (kh, kw), strides, pads, dil)))
        weights = {"weight": np.array(weight, dtype=np.float32)}
        bias = self._bias(i, 2, out, node.input[1])
        if bias is not None:
            weights["bias"] = bias
        args = {"out": int(out), "kernel": _pair((kh, kw)), "stride": _pair(strides), "pad": _pair(pads),
                "dilation": _pair(dil), "groups": group, "bias": bias is not None}
        self.emit(i, "conv", args, [x], shape, weights=weights, weight_name=node.input[1])

    def op_BatchNormalization(self, i, node, a):
        import numpy as np

        x = self.tensor(i)
        if a.get("training_mode", 0) or any(o and self.consumers.get(o) for o in node.output[1:]):
            raise self.fail(i, "batch normalisation in training mode is not supported",
                            "export the model in eval mode")
        c = x.shape[0]
        weights = {}
        for k, key in ((1, "weight"), (2, "bias"), (3, "running_mean"), (4, "running_var")):
            v = self._weight(i, k, f"the {key.replace('_', ' ')}")
            if v.size != c or v.ndim != 1:
                raise self.fail(i, f"the {key.replace('_', ' ')} `{node.input[k]}` is {_shape_text(v.shape)}, the "
                                   f"input has {c} channels", "the file is inconsistent; re-export it")
            weights[key] = np.array(v, dtype=np.float32)
        momentum = float(f"{1 - _float(a.get('momentum', 0.9)):.12g}")  # ONNX keeps 1 - torch's momentum
        args = {"eps": _float(a.get("epsilon", 1e-5)), "momentum": momentum, "affine": True}
        self.emit(i, "bn", args, [x], x.shape, weights=weights, weight_name=node.input[1])

    def op_Gemm(self, i, node, a):
        x = self.tensor(i)
        if len(x.shape) != 1 or a.get("transA", 0):
            which = " (transposed)" if a.get("transA") else ""
            raise self.fail(i, f"a Gemm of an N x {_shape_text(x.shape)} input{which} is not supported",
                            "Gemm is a linear layer of a flat N x F input")
        weight = self._weight(i, 1)
        if weight.ndim != 2:
            raise self.fail(i, f"the weight `{node.input[1]}` is {_shape_text(weight.shape)}, not a matrix", DAMAGED)
        if not a.get("transB", 0):
            weight = weight.T  # stored in x out; a linear layer keeps out x in
        alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
        self._linear(i, node, x, weight * alpha if alpha != 1 else weight, 2, beta)

    def op_MatMul(self, i, node, a):
        x = self.tensor(i)
        if len(x.shape) != 1 and not (len(x.shape) == 3 and x.layer in self.last):
            raise self.fail(i, f"a MatMul of an N x {_shape_text(x.shape)} input is not supported",
                            "MatMul by a constant matrix is a linear layer of a flat N x F input or of a "
                            "channels-last N x H x W x C one (after a Transpose [0, 2, 3, 1])")
        weight = self._weight(i, 1)
        if weight.ndim != 2:
            raise self.fail(i, f"the weight `{node.input[1]}` is {_shape_text(weight.shape)}, not a matrix", DAMAGED)
        add = self.only_user(node.output[0])
        if add is not None and self.nodes[add].op_type == "Add" and len(self.nodes[add].input) == 2:
            other = [n for n in self.nodes[add].input if n != node.output[0]]
            if len(other) == 1 and other[0] in self.const and self.const[other[0]].size == weight.shape[1]:
                self.absorbed.add(add)  # MatMul + Add: one linear layer with a bias
                self._linear(i, node, x, weight.T, None, 1.0, bias=self.const[other[0]], bias_name=other[0],
                             output=self.nodes[add].output[0])
                return
        self._linear(i, node, x, weight.T, None, 1.0)

    def _linear(self, i, node, x, weight, bias_input, beta, bias=None, bias_name=None, output=None):
        import numpy as np

        out, features = weight.shape
        if features != x.shape[-1]:
            raise self.fail(i, f"the weight `{node.input[1]}` takes {features} features, the input has {x.shape[-1]}",
                            "the file is inconsistent; re-export it")
        weights = {"weight": np.array(weight, dtype=np.float32)}
        if bias_input is not None and bias_input < len(node.input) and node.input[bias_input]:
            bias_name = node.input[bias_input]
            c = self._weight(i, bias_input, "the bias")
            # Gemm's C broadcasts: one number is a bias of that value everywhere
            bias = np.full(out, float(c.ravel()[0])) if c.size == 1 else self._bias(i, bias_input, out, node.input[1])
        if bias is not None:
            bias = np.array(np.ravel(bias) * beta, dtype=np.float32)
            if bias.size != out:
                raise self.fail(i, f"the bias `{bias_name}` has {bias.size} values, the layer {out} outputs",
                                DAMAGED)
            weights["bias"] = bias
        self.emit(i, "linear", {"out": int(out), "bias": bias is not None}, [x], (*x.shape[:-1], out), weights=weights,
                  weight_name=node.input[1], output=output)

    def op_LRN(self, i, node, a):
        x = self.tensor(i)
        if "size" not in a:
            raise self.fail(i, "no size", DAMAGED)
        args = {"size": int(a["size"]), "alpha": _float(a.get("alpha", 1e-4)), "beta": _float(a.get("beta", 0.75)),
                "k": _float(a.get("bias", 1.0))}
        self.emit(i, "lrn", args, [x], x.shape)

    # -- activations

    def _activation(self, i, op, args=None):
        x = self.tensor(i)
        self.emit(i, op, args or {}, [x], x.shape)

    def op_Relu(self, i, node, a):
        self._activation(i, "relu")

    def op_Tanh(self, i, node, a):
        self._activation(i, "tanh")

    def op_HardSwish(self, i, node, a):
        self._activation(i, "hardswish")

    def op_Sigmoid(self, i, node, a):
        if not self._gated(i, node, "silu"):
            self._activation(i, "sigmoid")

    def op_HardSigmoid(self, i, node, a):
        alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
        if abs(alpha - 1 / 6) > 1e-6 or abs(beta - 0.5) > 1e-6:
            raise self.fail(i, f"HardSigmoid(alpha={alpha:g}, beta={beta:g}) is not supported",
                            "supported: alpha=1/6, beta=0.5 (torch.nn.Hardsigmoid)")
        if not self._gated(i, node, "hardswish"):
            self._activation(i, "hardsigmoid")

    def _gated(self, i, node, op) -> bool:
        """x * Sigmoid(x) is silu, x * HardSigmoid(x) hardswish: the Mul that is the gate's only user
        makes the layer (with its own metadata: the SiLU module)."""
        mul = self.only_user(node.output[0])
        if mul is None or self.nodes[mul].op_type != "Mul" or sorted(self.nodes[mul].input) != \
                sorted([node.input[0], node.output[0]]):
            return False
        self.fused[mul] = (op, i)
        return True

    def op_LeakyRelu(self, i, node, a):
        self._activation(i, "leaky_relu", {"slope": _float(a.get("alpha", 0.01))})

    def op_Elu(self, i, node, a):
        self._activation(i, "elu", {"alpha": _float(a.get("alpha", 1.0))})

    def op_Gelu(self, i, node, a):
        if a.get("approximate", "none") != "none":
            raise self.fail(i, f"Gelu(approximate={a['approximate']!r}) is not supported", "supported: Gelu()")
        self._activation(i, "gelu")

    def op_Clip(self, i, node, a):
        import numpy as np

        if self.opset < 11:
            low, high = a.get("min"), a.get("max")
        else:
            low, high = self.constant(i, 1, what="the minimum"), self.constant(i, 2, what="the maximum")
        low = None if low is None or float(np.ravel(low)[0]) == -math.inf else float(np.ravel(low)[0])
        high = None if high is None or float(np.ravel(high)[0]) == math.inf else float(np.ravel(high)[0])
        if low == 0 and high == 6:
            self._activation(i, "relu6")
        elif low == 0 and high is None:
            self._activation(i, "relu")
        else:
            raise self.fail(i, f"Clip({low}, {high}) is not supported",
                            "supported: Clip(0, 6) (relu6) and Clip(0) (relu)")

    def op_Softmax(self, i, node, a):
        x = self.tensor(i)
        rank = len(x.shape) + 1
        axis = int(a.get("axis", 1 if self.opset < 13 else -1)) % rank
        if axis != 1:
            raise self.fail(i, f"softmax over axis {axis} of an N x {_shape_text(x.shape)} input is not supported",
                            "supported: softmax over the channels (axis 1)")
        self.emit(i, "softmax", {}, [x], x.shape)

    def op_Dropout(self, i, node, a):
        import numpy as np

        x = self.tensor(i)
        if len(node.output) > 1 and node.output[1] and self.consumers.get(node.output[1]):
            raise self.fail(i, "its mask output is used", "export the model in eval mode")
        if self.opset >= 12:
            training = self.constant(i, 2, what="training_mode")
            if training is not None and bool(np.ravel(training)[0]):
                raise self.fail(i, "dropout in training mode is not supported", "export the model in eval mode")
            ratio = self.constant(i, 1, what="the ratio")
            p = float(np.ravel(ratio)[0]) if ratio is not None else 0.5
        else:
            p = float(a.get("ratio", 0.5))
        self.emit(i, "dropout", {"p": float(f"{p:.6g}")}, [x], x.shape)

    def op_Identity(self, i, node, a):
        self.act[node.output[0]] = self.tensor(i)

    # -- pooling

    def _padded(self, i) -> tuple:
        """The input of a Conv or AveragePool and the zero padding (h, w) of a Pad node before it."""
        fused = self.fused.get(i)
        if fused is not None and fused[0] == "pad":
            return fused[1], fused[2]
        return self.tensor(i), (0, 0)

    def _pool(self, i, node, a, op):
        x, extra = self._padded(i)
        c, h, w = self._spatial(i, x, "pooling")
        if len(node.output) > 1 and node.output[1] and self.consumers.get(node.output[1]):
            raise self.fail(i, "its indices output is used", "supported: max pooling without indices")
        if "kernel_shape" not in a or len(a["kernel_shape"]) != 2:
            raise self.fail(i, "no two-dimensional kernel_shape", "graphdsl pools 2-D windows; " + DAMAGED)
        kernel = tuple(a["kernel_shape"])
        strides, dil = tuple(a.get("strides", (1, 1))), tuple(a.get("dilations", (1, 1)))
        if min(kernel + strides + dil) < 1 or len(strides) != 2 or len(dil) != 2:
            raise self.fail(i, "kernel, strides and dilations must be positive pairs", DAMAGED)
        pads = self._pads(i, a, (h, w), kernel, strides, dil)
        if any(extra) and any(pads):
            raise self.fail(i, "padding of its own after a Pad node is not supported",
                            "supported: a Pad node or the pads attribute, not both")
        pads = tuple(p + e for p, e in zip(pads, extra))
        if any(p > k // 2 for p, k in zip(pads, kernel)):
            raise self.fail(i, f"padding {_pair(pads)} is more than half the kernel {_pair(kernel)}",
                            "torch (and graphdsl) pool with at most half the kernel as padding")
        ceil = bool(a.get("ceil_mode", 0))
        shape = (c, *(_sliding(n, k, s, p, d, ceil) for n, k, s, p, d in zip((h, w), kernel, strides, pads, dil)))
        args = {"kernel": _pair(kernel), "stride": _pair(strides), "pad": _pair(pads), "ceil": ceil}
        if op == "maxpool":
            args["dilation"] = _pair(dil)
        elif dil != (1, 1):
            raise self.fail(i, "average pooling with dilations is not supported",
                            "supported: dilations [1, 1] (torch.nn.AvgPool2d has none)")
        elif any(pads):  # the zeros of a Pad node count
            args["count_include_pad"] = bool(a.get("count_include_pad", 0)) or any(extra)
        self.emit(i, op, args, [x], shape)

    def op_MaxPool(self, i, node, a):
        if a.get("storage_order", 0):
            raise self.fail(i, "storage_order=1 is not supported", "supported: storage_order=0 (row major)")
        self._pool(i, node, a, "maxpool")

    def op_AveragePool(self, i, node, a):
        self._pool(i, node, a, "avgpool")

    def _global(self, i, op, keep=True):
        from ..values import Symbol

        x = self.tensor(i)
        c, _, _ = self._spatial(i, x, "pooling")
        if keep:
            self.emit(i, op, {"kernel": Symbol("global")}, [x], (c, 1, 1))
            return
        pooled = self.emit(i, op, {"kernel": Symbol("global")}, [x], (c, 1, 1),
                           output=f"{self.nodes[i].output[0]}_pool")
        self.emit(i, "flatten", {}, [pooled], (c,))

    def op_GlobalAveragePool(self, i, node, a):
        self._global(i, "avgpool")

    def op_GlobalMaxPool(self, i, node, a):
        self._global(i, "maxpool")

    def _reduce(self, i, node, a, op):
        import numpy as np

        x = self.tensor(i)
        axes = a.get("axes")
        if axes is None and len(node.input) > 1:
            axes = self.constant(i, 1, what="the axes")
        rank = len(x.shape) + 1
        if axes is None or {int(v) % rank for v in np.ravel(axes)} != {2, 3} or rank != 4:
            raise self.fail(i, "a reduction other than over H and W of N x C x H x W is not supported",
                            "supported: the mean or max over axes 2 and 3 (global pooling)")
        self._global(i, op, keep=bool(a.get("keepdims", 1)))

    def op_ReduceMean(self, i, node, a):
        self._reduce(i, node, a, "avgpool")

    def op_ReduceMax(self, i, node, a):
        self._reduce(i, node, a, "maxpool")

    # -- shapes and merges

    def op_Flatten(self, i, node, a):
        x = self.tensor(i)
        rank = len(x.shape) + 1
        axis = int(a.get("axis", 1))
        if (axis + rank if axis < 0 else axis) != 1:
            raise self.fail(i, f"flattening from axis {a.get('axis')} is not supported", "supported: Flatten(axis=1)")
        self.emit(i, "flatten", {}, [x], (math.prod(x.shape),))

    def op_Reshape(self, i, node, a):
        import numpy as np

        x = self.tensor(i)
        target = [int(d) for d in np.ravel(self.constant(i, 1, what="the target shape", required=True))]
        full = [self.batch, *x.shape]
        if not a.get("allowzero", 0):
            target = [full[k] if d == 0 and k < len(full) else d for k, d in enumerate(target)]
        flat = math.prod(x.shape)
        if len(target) == 2 and target[0] in (self.batch, -1) and target[1] in (flat, -1) and target != [-1, -1]:
            self.emit(i, "flatten", {}, [x], (flat,))
        elif target[0] in (self.batch, -1) and target[1:] == list(x.shape):
            self.act[node.output[0]] = x  # a reshape to the same shape
        elif not self._channel_shuffle(i, node, x, target) and not self._strided_identity(i, node, x, target):
            raise self.fail(i, f"a reshape of N x {_shape_text(x.shape)} to {target} is not supported",
                            "supported: flattening to N x -1 (x.view(x.size(0), -1), torch.flatten(x, 1)) and the "
                            "channel shuffle (Reshape to N x g x C/g x H x W, Transpose [0, 2, 1, 3, 4], Reshape "
                            "back to N x C x H x W)")

    def _channel_shuffle(self, i, node, x, target) -> bool:
        """ShuffleNet's `x.view(n, g, c // g, h, w).transpose(1, 2).reshape(n, c, h, w)`: the layer
        `channel_shuffle(g)` (as torch.fx's front end), made at the first Reshape; the others absorbed."""
        import numpy as np

        if len(x.shape) != 3 or len(target) != 5 or target[0] not in (self.batch, -1):
            return False
        c, h, w = x.shape
        groups = target[1]
        if groups < 1 or c % groups or target[2] not in (c // groups, -1) or target[3:] != [h, w]:
            return False
        transpose = self.only_user(node.output[0])
        if transpose is None or self.nodes[transpose].op_type != "Transpose" or \
                list(_attrs(self.nodes[transpose]).get("perm", [])) != [0, 2, 1, 3, 4]:
            return False
        back = self.only_user(self.nodes[transpose].output[0])
        if back is None or self.nodes[back].op_type != "Reshape" or len(self.nodes[back].input) < 2 or \
                self.nodes[back].input[1] not in self.const:
            return False
        shape = [int(d) for d in np.ravel(self.const[self.nodes[back].input[1]])]
        shape = [{0: self.batch, 1: c // groups, 2: groups, 3: h}.get(k, d) if d == 0 and k < 4 and not
                 _attrs(self.nodes[back]).get("allowzero", 0) else d for k, d in enumerate(shape)]
        if len(shape) != 4 or shape[0] not in (self.batch, -1) or shape[1:] not in ([c, h, w], [-1, h, w]):
            return False
        self.absorbed.update((transpose, back))
        self.emit(i, "channel_shuffle", {"groups": int(groups)}, [x], x.shape, output=self.nodes[back].output[0])
        return True

    def _strided_identity(self, i, node, x, target) -> bool:
        """The dynamo exporter's `as_strided` after AdaptiveAvgPool2d(1) of one sample: Reshape to [-1], then
        Gather of the indices 0 .. C-1 in the N x C x 1 x 1 shape back, which gives the input itself."""
        import numpy as np

        if target != [-1] or self.batch != 1:
            return False
        gather = self.only_user(node.output[0])
        if gather is None or self.nodes[gather].op_type != "Gather" or _attrs(self.nodes[gather]).get("axis", 0) or \
                len(self.nodes[gather].input) != 2 or self.nodes[gather].input[1] not in self.const:
            return False
        idx = self.const[self.nodes[gather].input[1]]
        n = math.prod(x.shape)
        if idx.shape != (1, *x.shape) or not np.array_equal(np.ravel(idx), np.arange(n)):
            return False
        self.absorbed.add(gather)
        self.act[self.nodes[gather].output[0]] = x
        return True

    def op_Squeeze(self, i, node, a):
        import numpy as np

        x = self.tensor(i)
        axes = a.get("axes")
        if axes is None and len(node.input) > 1:
            axes = self.constant(i, 1, what="the axes")
        rank = len(x.shape) + 1
        dims = {int(v) % rank for v in np.ravel(axes)} if axes is not None else \
            {k + 1 for k, d in enumerate(x.shape) if d == 1}
        if rank == 4 and x.shape[1:] == (1, 1) and dims == {2, 3}:
            self.emit(i, "flatten", {}, [x], (x.shape[0],))
        else:
            raise self.fail(i, f"squeezing axes {sorted(dims)} of N x {_shape_text(x.shape)} is not supported",
                            "supported: N x C x 1 x 1 to N x C")

    def op_Concat(self, i, node, a):
        xs = [self.tensor(i, k) for k in range(len(node.input))]
        rank = len(xs[0].shape) + 1
        axis = int(a.get("axis", 1))
        if (axis % rank if axis < 0 else axis) != 1 or any(len(v.shape) + 1 != rank for v in xs):
            raise self.fail(i, f"concatenation along axis {axis} is not supported",
                            "supported: along the channels (axis 1)")
        if any(v.shape[1:] != xs[0].shape[1:] for v in xs):
            raise self.fail(i, "its inputs differ in more than the channels: " +
                            ", ".join(_shape_text(v.shape) for v in xs), DAMAGED)
        self.emit(i, "concat", {}, xs, (sum(v.shape[0] for v in xs), *xs[0].shape[1:]))

    def op_Add(self, i, node, a):
        xs = [self.tensor(i, k) for k in range(len(node.input))]
        if any(v.shape != xs[0].shape for v in xs):
            raise self.fail(i, "it adds tensors of different shapes: " + ", ".join(_shape_text(v.shape) for v in xs),
                            "supported: the sum of tensors of one shape (a residual)")
        self.emit(i, "add", {}, xs, xs[0].shape)

    op_Sum = op_Add

    def op_Mul(self, i, node, a):
        fused = self.fused.get(i)
        if fused is not None:
            op, gate = fused
            x = self.tensor(gate)
            self.emit(i, op, {}, [x], x.shape)
            return
        if len(node.input) == 2 and sum(n in self.const for n in node.input) == 1:
            self._layer_scale(i, node)
            return
        xs = [self.tensor(i, k) for k in range(len(node.input))]
        shapes = [v.shape for v in xs]
        try:
            import numpy as np

            shape = tuple(np.broadcast_shapes(*shapes))
        except ValueError:
            shape = None
        if shape is None or any(len(s) != len(shape) for s in shapes) or shape not in shapes:
            raise self.fail(i, "it multiplies tensors whose shapes do not broadcast to one of them: " +
                            ", ".join(_shape_text(s) for s in shapes), "supported: equal shapes, or a C x 1 x 1 gate")
        self.emit(i, "mul", {}, xs, shape)

    def _layer_scale(self, i, node):
        """An initializer times a tensor, one factor per channel (C x 1 x 1 on an image, C on flat or
        channels-last features): graphdsl's `scale`, its parameter the initializer at its own path
        (ConvNeXt's `features.1.0.layer_scale`), as the torch.fx front end's `self.layer_scale * x`."""
        import numpy as np

        k = 0 if node.input[0] in self.const else 1
        name = node.input[k]
        x = self.tensor(i, 1 - k)
        value = self._weight(i, k, "the factor")
        image = len(x.shape) == 3 and x.layer not in self.last
        want = (x.shape[0], 1, 1) if image else (x.shape[-1],)
        if value.shape not in (want, (1, *want)):
            raise self.fail(i, f"it multiplies a {_shape_text(x.shape)} tensor by the constant `{name}` "
                               f"({_shape_text(value.shape)})", "supported: a per-channel factor (a layer scale): "
                            "C x 1 x 1 on an image, C on flat or channels-last features")
        flat = np.ravel(value)
        init = float(f"{float(flat[0]):.7g}") if bool((flat == flat[0]).all()) else 1.0  # float32: 1e-06
        path = name if self.hierarchy is not None and DOTTED.fullmatch(name) else self._flat_path(node, i, name)
        self.emit(i, "scale", {"init": init}, [x], x.shape, weights={"": np.array(value.reshape(want),
                                                                                    dtype=np.float32)}, path=path)

    def op_Div(self, i, node, a):
        """Gelu as the dynamo exporter writes it before opset 20: x * (0.5 * (1 + Erf(x / sqrt 2)))."""
        import numpy as np

        x = self.tensor(i)
        root2 = self.constant(i, 1, what="the divisor")
        if root2 is None or root2.size != 1 or abs(float(np.ravel(root2)[0]) - math.sqrt(2)) > 1e-6:
            raise self.fail(i, "this division is not supported", "supported: Div only within gelu, "
                            "x * 0.5 * (1 + Erf(x / sqrt 2))")
        chain, value = [], node.output[0]
        for op, constant in (("Erf", None), ("Add", 1.0), ("Mul", 0.5), ("Mul", node.input[0])):
            user = self.only_user(value)
            n = self.nodes[user] if user is not None else None
            if n is None or n.op_type != op or len(n.input) != (1 if op == "Erf" else 2):
                raise self.fail(i, "this division is not supported", "supported: Div only within gelu, "
                                "x * 0.5 * (1 + Erf(x / sqrt 2))")
            if constant is not None:
                (other,) = [m for m in n.input if m != value] or [None]
                ok = other == constant if isinstance(constant, str) else other in self.const and \
                    self.const[other].size == 1 and float(np.ravel(self.const[other])[0]) == constant
                if not ok:
                    raise self.fail(user, "this node is not supported", "supported: within gelu, "
                                    "x * 0.5 * (1 + Erf(x / sqrt 2))")
            chain.append(user)
            value = n.output[0]
        self.absorbed.update(chain)
        self.emit(i, "gelu", {}, [x], x.shape, output=value)

    def op_Transpose(self, i, node, a):
        """Transpose [0, 2, 3, 1] to channels-last and [0, 3, 1, 2] back: `permute` (ConvNeXt's block, as
        torchvision's Permute); the two around a LayerNormalization of the last axis, in the module of the
        LayerNormalization (torchvision's LayerNorm2d), are `layer_norm` of the C x H x W tensor."""
        x = self.tensor(i)
        perm = tuple(int(p) for p in a.get("perm", ()))
        last = x.layer in self.last
        if perm == (0, 2, 3, 1) and len(x.shape) == 3 and not last:
            norm = self.only_user(node.output[0])
            back = self.only_user(self.nodes[norm].output[0]) if norm is not None and \
                self.nodes[norm].op_type == "LayerNormalization" else None
            if back is not None and self.nodes[back].op_type == "Transpose" and \
                    tuple(_attrs(self.nodes[back]).get("perm", ())) == (0, 3, 1, 2) and \
                    self._same_module(i, norm, back):
                self.absorbed.update((norm, back))
                self._layer_norm(norm, x, output=self.nodes[back].output[0])
                return
            c, h, w = x.shape
            self.emit(i, "permute", {"dims": perm}, [x], (h, w, c), path=self._permute_module(i))
        elif perm == (0, 3, 1, 2) and len(x.shape) == 3 and last:
            h, w, c = x.shape
            self.emit(i, "permute", {"dims": perm}, [x], (c, h, w), path=self._permute_module(i))
        else:
            layout = "channels-last " if last else ""
            raise self.fail(i, f"a transpose {list(perm)} of an N x {_shape_text(x.shape)} {layout}tensor is not "
                               "supported", "supported: [0, 2, 3, 1] of N x C x H x W to channels-last, [0, 3, 1, 2] "
                            "back, and [0, 2, 1, 3, 4] within the channel shuffle (Reshape, Transpose, Reshape)")

    def _permute_module(self, i):
        """The path of the module a Transpose ran in where that is a `Permute` (torchvision.ops.Permute,
        ConvNeXt's), the module of the layer (as the torch.fx front end); None otherwise."""
        scopes = self._scopes_of(self.nodes[i]) if self.hierarchy is not None else None
        if scopes is None or len(scopes) < 3 or scopes[-2][1].rpartition(".")[2] != "Permute":
            return None
        return scopes[-2][0]

    def _same_module(self, *nodes) -> bool:
        """Whether the nodes ran in one module (or the file says nothing of modules)."""
        if self.hierarchy is None:
            return True
        scopes = [self._scopes_of(self.nodes[n]) for n in nodes]
        return all(s is not None and s[:-1] == scopes[0][:-1] for s in scopes)

    def op_LayerNormalization(self, i, node, a):
        self._layer_norm(i, self.tensor(i))

    def _layer_norm(self, i, x: Value, output=None):
        """LayerNormalization of the last axis: of flat features, of channels-last ones, or (`output` given,
        the Transposes around it absorbed) of the channels of the C x H x W tensor `x`."""
        import numpy as np

        node = self.nodes[i]
        a = _attrs(node)
        image = output is not None
        rank = len(x.shape) + 1
        if image:
            rank = 4
        elif len(x.shape) == 3 and x.layer not in self.last:
            raise self.fail(i, "a LayerNormalization over the last axis (width) of an image is not supported",
                            "supported: of flat features, or of channels-last ones after Transpose [0, 2, 3, 1]")
        if int(a.get("axis", -1)) % rank != rank - 1:
            raise self.fail(i, f"a LayerNormalization from axis {a.get('axis')} is not supported",
                            "supported: over the last axis (torch.nn.LayerNorm(C))")
        if any(o and self.consumers.get(o) for o in node.output[1:]):
            raise self.fail(i, "its mean or inverse deviation output is used", "supported: the normalised output")
        c = x.shape[0] if image else x.shape[-1]
        scale = self._weight(i, 1, "the scale")
        has_bias = len(node.input) > 2 and bool(node.input[2])
        bias = self._weight(i, 2, "the bias") if has_bias else None
        for what, v, name in (("scale", scale, node.input[1]), ("bias", bias, node.input[2] if has_bias else "")):
            if v is not None and (v.ndim != 1 or v.size != c):
                raise self.fail(i, f"the {what} `{name}` is {_shape_text(v.shape)}, the input has {c} channels",
                                DAMAGED)
        if bias is None and not np.all(scale == 1):
            raise self.fail(i, "a LayerNormalization with a scale but no bias is not supported",
                            "supported: a weight and a bias (torch.nn.LayerNorm), or neither "
                            "(elementwise_affine=False)")
        affine = bias is not None
        weights = {"weight": np.array(scale, dtype=np.float32), "bias": np.array(bias, dtype=np.float32)} \
            if affine else None
        self.emit(i, "layer_norm", {"eps": _float(a.get("epsilon", 1e-5)), "affine": affine}, [x], x.shape,
                  weights=weights, weight_name=node.input[1], output=output)

    def op_Split(self, i, node, a):
        """A split of the channels (`x.chunk(n, dim=1)`, `x.split(sizes, dim=1)`): a `channels(start, stop)`
        layer for each part used, as the torch.fx front end."""
        import numpy as np

        x = self.tensor(i)
        rank = len(x.shape) + 1
        if int(a.get("axis", 0)) % rank != 1:
            raise self.fail(i, f"a split along axis {a.get('axis', 0)} is not supported",
                            "supported: along the channels (axis 1)")
        c = x.shape[0]
        sizes = a.get("split") if self.opset < 13 else self.constant(i, 1, what="the sizes")
        n = len(node.output)
        if sizes is not None:
            sizes = [int(v) for v in np.ravel(sizes)]
        elif "num_outputs" in a or self.opset < 18:
            parts = int(a.get("num_outputs", n))
            sizes = [-(-c // parts)] * parts  # as torch.chunk: parts of ceil(c / n), the last smaller
            sizes[-1] = c - sum(sizes[:-1])
        if sizes is None or len(sizes) != n or min(sizes) < 0 or sum(sizes) != c:
            raise self.fail(i, f"its parts {sizes} do not split {c} channels into {n}", DAMAGED)
        self.borrow_scopes(i, [o for o in node.output if o])
        start = 0
        for out, size in zip(node.output, sizes):
            if out and self.consumers.get(out) and size:
                self.emit(i, "channels", {"start": start, "stop": start + size}, [x], (size, *x.shape[1:]),
                          output=out)
            start += size

    def op_Pad(self, i, node, a):
        import numpy as np

        x = self.tensor(i)
        if a.get("mode", "constant") != "constant":
            raise self.fail(i, f"{a['mode']} padding is not supported", "supported: zero padding of the channels")
        pads = a.get("pads") if self.opset < 11 else self.constant(i, 1, what="the pads", required=True)
        value = a.get("value", 0.0) if self.opset < 11 else self.constant(i, 2, 0.0, what="the value")
        axes = self.constant(i, 3, what="the axes") if self.opset >= 18 else None
        rank = len(x.shape) + 1
        pads = [int(p) for p in np.ravel(pads)]
        axes = [int(v) % rank for v in np.ravel(axes)] if axes is not None else list(range(rank))
        if len(pads) != 2 * len(axes):
            raise self.fail(i, "pads do not match the axes", DAMAGED)
        before = {ax: pads[k] for k, ax in enumerate(axes)}
        after = {ax: pads[k + len(axes)] for k, ax in enumerate(axes)}
        extra = before.get(1, 0) + after.get(1, 0)
        spatial = [(before.get(ax, 0), after.get(ax, 0)) for ax in (2, 3)]
        zero = float(np.ravel(value)[0]) == 0 and rank == 4 and not before.get(0) and not after.get(0)
        user = self.only_user(node.output[0])
        if zero and not extra and any(map(any, spatial)) and all(b == e >= 0 for b, e in spatial) and \
                user is not None and self.nodes[user].op_type in ("Conv", "AveragePool"):
            # zero padding the next Conv (or AveragePool, counting the zeros) does itself: older exporters
            # and converters write it as a node of its own
            self.fused[user] = ("pad", x, (spatial[0][0], spatial[1][0]))
            return
        others = [p for ax in axes if ax != 1 for p in (before[ax], after[ax])]
        if not zero or any(others) or before.get(1, 0) != extra // 2 or after.get(1, 0) < 0:
            raise self.fail(i, f"padding {pads} is not supported", "supported: zero channels added half before and "
                            "half after (pad_channels), and symmetric zero padding of H and W before a Conv or "
                            "AveragePool")
        self.emit(i, "pad_channels", {"out": x.shape[0] + extra}, [x], (x.shape[0] + extra, *x.shape[1:]))

    def op_Slice(self, i, node, a):
        x = self.tensor(i)
        rank = len(x.shape) + 1
        cs = [self.const.get(n) if n else None for n in node.input]
        starts, ends, axes, steps = self._slice_args(i, a, cs, rank)
        full = [self.batch, *x.shape]
        spans = {ax: _clamped(s, e, st, full[ax]) for s, e, ax, st in zip(starts, ends, axes, steps)}
        spans = {ax: sp for ax, sp in spans.items() if sp != (0, full[ax], 1)}  # whole axes
        if not spans:
            self.act[node.output[0]] = x
            return
        if set(spans) == {1} and spans[1][2] == 1 and spans[1][1] > spans[1][0]:
            start, stop, _ = spans[1]
            self.borrow_scopes(i, node.output[:1])
            self.emit(i, "channels", {"start": start, "stop": stop}, [x], (stop - start, *x.shape[1:]))
            return
        strided = all(ax in (2, 3) and sp[0] == 0 and sp[1] == full[ax] and sp[2] > 1 for ax, sp in spans.items())
        if strided and rank == 4:
            step = {sp[2] for sp in spans.values()}
            output = node.output[0]
            if set(spans) != {2, 3}:  # torch writes x[:, :, ::2, ::2] as two Slices, H then W
                nxt = self.only_user(output)
                other = ({2, 3} - set(spans)).pop()
                if nxt is None or self.nodes[nxt].op_type != "Slice":
                    raise self.fail(i, "striding one spatial axis only is not supported",
                                    "supported: x[:, :, ::s, ::s] (subsample)")
                ncs = [self.const.get(n) if n else None for n in self.nodes[nxt].input]
                if any(c is None for c in ncs[1:]):
                    raise self.fail(nxt, "slice bounds computed from the input are not supported",
                                    "export with constant folding, so that slice bounds are constants")
                ns, ne, nax, nst = self._slice_args(nxt, _attrs(self.nodes[nxt]), ncs, rank)
                shape_after = list(full)
                shape_after[list(spans)[0]] = -(-full[list(spans)[0]] // next(iter(step)))
                nspans = {ax: _clamped(s, e, st, shape_after[ax]) for s, e, ax, st in zip(ns, ne, nax, nst)}
                nspans = {ax: sp for ax, sp in nspans.items() if sp != (0, shape_after[ax], 1)}
                if set(nspans) != {other} or nspans[other] != (0, full[other], next(iter(step))):
                    raise self.fail(i, "striding one spatial axis only is not supported",
                                    "supported: x[:, :, ::s, ::s] (subsample)")
                self.absorbed.add(nxt)
                output = self.nodes[nxt].output[0]
            elif len(step) != 1:
                raise self.fail(i, "different strides on H and W are not supported", "supported: x[:, :, ::s, ::s]")
            s = step.pop()
            self.emit(i, "subsample", {"stride": s}, [x], (x.shape[0], -(-x.shape[1] // s), -(-x.shape[2] // s)),
                      output=output)
            return
        raise self.fail(i, "this slice is not supported", "supported: x[:, a:b] (channels) and x[:, :, ::s, ::s] "
                        "(subsample)")

    def _resize(self, i, node, a, scales, sizes, mode, coordinates, nearest_mode):
        import numpy as np

        x = self.tensor(i)
        c, h, w = self._spatial(i, x, "resizing")
        if a.get("antialias", 0) or a.get("keep_aspect_ratio_policy", "stretch") != "stretch":
            raise self.fail(i, "antialias and keep_aspect_ratio_policy are not supported",
                            "supported: antialias=0, keep_aspect_ratio_policy=stretch (F.interpolate)")
        axes = a.get("axes")
        if axes is not None and sorted(int(v) % 4 for v in axes) != [2, 3]:
            raise self.fail(i, f"resizing axes {list(axes)} is not supported", "supported: H and W")
        args = {}
        if scales is not None and np.size(scales):
            sc = [float(v) for v in np.ravel(scales)]
            sc = sc if axes is not None else (sc[2:] if len(sc) == 4 and sc[:2] == [1.0, 1.0] else None)
            if sc is None or len(sc) != 2 or min(sc) <= 0:
                raise self.fail(i, f"scales {list(np.ravel(scales))} are not supported", "supported: [1, 1, sh, sw]")
            sc = [int(v) if v.is_integer() else v for v in sc]
            args["scale"] = sc[0] if sc[0] == sc[1] else tuple(sc)
            shape = (c, math.floor(h * sc[0]), math.floor(w * sc[1]))
            integral = all(isinstance(v, int) for v in sc)
        elif sizes is not None and np.size(sizes):
            sz = [int(v) for v in np.ravel(sizes)]
            sz = sz if axes is not None else (sz[2:] if len(sz) == 4 and sz[1] == c else None)
            if sz is None or len(sz) != 2 or min(sz) < 1:
                raise self.fail(i, f"sizes {list(np.ravel(sizes))} are not supported", "supported: [N, C, h, w]")
            args["size"] = _pair(sz)
            shape = (c, *sz)
            integral = sz[0] % h == 0 and sz[1] % w == 0
        else:
            raise self.fail(i, "neither scales nor sizes", DAMAGED)
        if mode == "nearest":
            ok = (coordinates == "asymmetric" and nearest_mode == "floor") or \
                (integral and coordinates in ("half_pixel", "pytorch_half_pixel") and nearest_mode.startswith("round"))
            if not ok:
                raise self.fail(i, f"nearest resizing with coordinate_transformation_mode={coordinates!r} and "
                                   f"nearest_mode={nearest_mode!r} is not supported",
                                "supported: as torch's F.interpolate(mode='nearest') (asymmetric, floor)")
        elif mode in ("linear", "bilinear"):
            if coordinates in ("half_pixel", "pytorch_half_pixel"):
                args.update(mode="bilinear")
            elif coordinates == "align_corners":
                args.update(mode="bilinear", align_corners=True)
            else:
                raise self.fail(i, f"linear resizing with coordinate_transformation_mode={coordinates!r} is not "
                                   "supported", "supported: half_pixel (align_corners=False) and align_corners")
        else:
            raise self.fail(i, f"{mode} resizing is not supported", "supported: nearest and (bi)linear")
        self.emit(i, "upsample", args, [x], shape)

    def op_Resize(self, i, node, a):
        if self.opset < 11:
            scales, sizes = self.constant(i, 1, what="the scales"), None
            coordinates, nearest = "asymmetric", "floor"
        else:
            scales, sizes = self.constant(i, 2, what="the scales"), self.constant(i, 3, what="the sizes")
            coordinates = a.get("coordinate_transformation_mode", "half_pixel")
            nearest = a.get("nearest_mode", "round_prefer_floor")
        self._resize(i, node, a, scales, sizes, a.get("mode", "nearest"), coordinates, nearest)

    def op_Upsample(self, i, node, a):
        scales = a.get("scales") if "scales" in a else self.constant(i, 1, what="the scales")
        self._resize(i, node, a, scales, None, a.get("mode", "nearest"), "asymmetric", "floor")


def _sliding(size: int, kernel: int, stride: int, pad: int, dilation: int = 1, ceil: bool = False) -> int:
    from ..ops.base import sliding_out

    return sliding_out(size, kernel, stride, pad, dilation, ceil)


def _clamped(start: int, end: int, step: int, dim: int) -> tuple[int, int, int]:
    """(start, stop, step) of an ONNX slice of an axis of `dim`, as Python's slice.indices gives them."""
    return slice(start, end, step).indices(dim)

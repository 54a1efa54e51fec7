"""`graphdsl import net.cfg [--weights net.weights]`: the Darknet front end.

The fixtures in tests/data/darknet are written by hand: `tiny_yolo.cfg`, a yolov3-tiny-like detector
(route, shortcut, upsample, a size-2/stride-1 maxpool, two [yolo] heads) on a 64x64 input, and
`groups.cfg`, a yolov4-tiny-like stem (route groups), Darknet's pooling padding on odd sizes, a grouped
convolution and a classifier tail ([connected] with batch_normalize, [dropout], [softmax], [cost]).

Static figures are checked against arithmetic written out below. The weights tests write `.weights`
files in Darknet's layout and compare the compiled spec's outputs with a forward pass written here in
numpy from Darknet's C code (its own cfg reader, im2col convolution, `normalize_cpu`'s batch norm,
`forward_maxpool_layer`'s windows, ...), which shares nothing with the importer.
"""

from __future__ import annotations

import struct
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

import graphdsl
from graphdsl.importers import ImportFailure, darknet, lift
from graphdsl.importers.command import import_
from graphdsl.printer import print_module

DATA = Path(__file__).resolve().parent / "data" / "darknet"
TINY = DATA / "tiny_yolo.cfg"
GROUPS = DATA / "groups.cfg"
cli = click.Group(commands=[import_])


def _spec(graph):
    return graphdsl.load(text=print_module(lift.lift(graph)))


# ---- static figures --------------------------------------------------------------------------------------


def test_tiny_yolo_figures_by_hand():
    graph = darknet.load(TINY)
    assert graph.input_shape == (3, 64, 64)
    assert graph.outputs == ("conv15", "conv22") and graph.output == "conv22"
    shapes = {layer.name: layer.shape for layer in graph.layers}
    # 64 -> four 2/2 maxpools -> 4; the size-2/stride-1 pool keeps 4; the upsample doubles it to 8
    assert shapes["maxpool7"] == (64, 4, 4) and shapes["maxpool9"] == (64, 4, 4)
    assert shapes["add12"] == (64, 4, 4) and shapes["upsample19"] == (16, 8, 8)
    assert shapes["concat20"] == (16 + 64, 8, 8)
    net = _spec(graph)
    # parameters: conv k*k*cin*cout, batch norm 2*c (scale, shift), the heads' convs a bias each
    #   conv0   3*3*3*8    =   216 + 16  =    232      conv2   3*3*8*16   =  1152 + 32  =  1184
    #   conv4   3*3*16*32  =  4608 + 64  =   4672      conv6   3*3*32*64  = 18432 + 128 = 18560
    #   conv8   3*3*64*64  = 36864 + 128 =  36992      conv10  1*1*64*32  =  2048 + 64  =  2112
    #   conv11  3*3*32*64  = 18432 + 128 =  18560      conv13  1*1*64*32  =  2048 + 64  =  2112
    #   conv14  3*3*32*64  = 18432 + 128 =  18560      conv15  64*21      =  1344 + 21  =  1365
    #   conv18  1*1*32*16  =   512 + 32  =    544      conv21  3*3*80*32  = 23040 + 64  = 23104
    #   conv22  32*21      =   672 + 21  =    693
    #   sum = 128,690
    assert net.params == 128_690
    # MACs: k*k*cin*cout * out_h*out_w
    #   conv0  216*64*64 = 884,736;  conv2, conv4, conv6: 1152*32*32 = 4608*16*16 = 18432*8*8 = 1,179,648
    #   conv8  36864*16 = 589,824;   conv10, conv13: 2048*16 = 32,768;  conv11, conv14: 18432*16 = 294,912
    #   conv15 1344*16 = 21,504;     conv18 512*16 = 8,192;  conv21 23040*64 = 1,474,560;  conv22 672*64 = 43,008
    #   sum = 884,736 + 3*1,179,648 + 589,824 + 2*32,768 + 2*294,912 + 21,504 + 8,192 + 1,474,560 + 43,008
    #       = 7,216,128
    assert net.macs == 7_216_128
    assert net.output_shapes == {"conv15": (21, 4, 4), "conv22": (21, 8, 8)}  # 3 anchors x (2 classes + 5)
    assert len(graph.warnings) == 3  # the stride-1 pool's rewriting, and each head's decoding left out
    assert "tiny_yolo.cfg:81" in graph.warnings[0] and "upsample(scale=2)" in graph.warnings[0]
    assert all("not part of the spec" in w for w in graph.warnings[1:])


def test_groups_figures_by_hand():
    graph = darknet.load(GROUPS)
    shapes = {layer.name: layer.shape for layer in graph.layers}
    assert shapes["channels3"] == (16, 10, 10)  # route groups=2 group_id=1: channels 16..31 of layer 2
    assert graph.layer("channels3").args == {"start": 16, "stop": 32}
    # 10 -> (10 + 1 - 2)//2 + 1 = 5 -> (5 + 1 - 2)//2 + 1 = 3 (ceil) -> (3 + 1 - 2)//1 + 1 = 3
    assert shapes["maxpool9"] == (64, 5, 5) and shapes["maxpool10"] == (64, 3, 3)
    assert shapes["maxpool11"] == (64, 3, 3)
    assert graph.layer("maxpool10").args["ceil"] is True
    net = _spec(graph)
    #   conv0  3*3*3*16  =   432 + 32 =   464     conv1  3*3*16*32 =  4608 + 64 =  4672
    #   conv2  3*3*32*32 =  9216 + 64 =  9280     conv4  3*3*16*16 =  2304 + 32 =  2336
    #   conv5  3*3*8*16  =  1152 + 32 =  1184 (groups=2: 8 input channels a filter)
    #   conv7  1*1*32*32 =  1024 + 64 =  1088     conv12 3*3*64*32 = 18432 + 32 (bias) = 18464
    #   fc13   288*24    =  6912 + 48 (bn) = 6960    fc15  24*10 + 10 = 250
    #   sum = 44,698
    assert net.params == 44_698
    #   conv0 432*20*20 = 172,800   conv1 4608*100 = 460,800   conv2 9216*100 = 921,600
    #   conv4 2304*100 = 230,400    conv5 1152*100 = 115,200   conv7 1024*100 = 102,400
    #   conv12 18432*9 = 165,888    fc13 288*24 = 6,912        fc15 24*10 = 240      sum = 2,176,240
    assert net.macs == 2_176_240
    assert net.output_shapes == {"output": (10,)}


def test_input_override_and_name():
    graph = darknet.load(TINY, "detector", (3, 96, 96))
    assert graph.name == "detector" and graph.input_shape == (3, 96, 96)
    assert graph.layer("conv15").shape == (21, 6, 6) and graph.layer("conv22").shape == (21, 12, 12)
    with pytest.raises(ImportFailure, match="takes an image") as info:
        darknet.load(TINY, input_shape=(64,))
    assert "CxHxW" in info.value.help


# ---- Darknet's forward, in numpy, from its C code ------------------------------------------------------------


def _read_cfg(text: str) -> list[tuple[str, dict]]:
    """Darknet's `read_cfg`: sections of key=value lines; `#` and `;` lines are comments."""
    sections = []
    for line in text.splitlines():
        line = "".join(line.split())
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            sections.append((line[1:-1], {}))
        else:
            key, value = line.split("=", 1)
            sections[-1][1][key] = value
    return sections


ACT = {"linear": lambda x: x, "leaky": lambda x: np.where(x > 0, x, 0.1 * x), "relu": lambda x: np.maximum(x, 0),
       "logistic": lambda x: 1 / (1 + np.exp(-x)), "swish": lambda x: x / (1 + np.exp(-x))}


def _conv(x, w, stride, pad, groups):
    """im2col: every (k x k) window of the zero-padded input, times the filters of its group."""
    f, cg, k, _ = w.shape
    windows = sliding_window_view(np.pad(x, ((0, 0), (pad, pad), (pad, pad))), (k, k), axis=(1, 2))
    windows = windows[:, ::stride, ::stride]
    per = f // groups
    return np.concatenate([np.einsum("chwij,fcij->fhw", windows[g * cg:(g + 1) * cg], w[g * per:(g + 1) * per])
                           for g in range(groups)])


def _maxpool(x, size, stride, padding):
    """forward_maxpool_layer: window (i, j) starts at i*stride - padding/2; cells outside are skipped."""
    c, h, w = x.shape
    oh, ow = (h + padding - size) // stride + 1, (w + padding - size) // stride + 1
    out = np.empty((c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            y0, x0 = i * stride - padding // 2, j * stride - padding // 2
            out[:, i, j] = x[:, max(y0, 0):min(y0 + size, h), max(x0, 0):min(x0 + size, w)].max(axis=(1, 2))
    return out


def _batchnorm(x, scales, mean, var):
    """normalize_cpu then scale_bias: Darknet adds .000001 to the standard deviation."""
    shape = (-1,) + (1,) * (x.ndim - 1)
    return (x - mean.reshape(shape)) / (np.sqrt(var.reshape(shape)) + .000001) * scales.reshape(shape)


def _darknet(text: str, x, rng, transpose=False):
    """Darknet's forward pass of the cfg on `x` (C x H x W) with weights drawn from `rng`: the float32s of
    a .weights file in load_weights' order, and the network's outputs (the inputs of the [yolo] heads, or
    the last layer's output)."""
    sections = _read_cfg(text)
    floats, outputs, out = [], [], []

    def draw(*shape, scale=1.0, low=None):
        v = rng.uniform(low, 1.5, shape) if low is not None else rng.normal(0, scale, shape)
        v = v.astype(np.float32)
        floats.append(v.ravel())
        return v.astype(np.float64)

    for kind, o in sections[1:]:
        prev = out[-1] if out else x
        if kind == "convolutional":
            n, size, stride = int(o["filters"]), int(o.get("size", 1)), int(o.get("stride", 1))
            pad = size // 2 if int(o.get("pad", 0)) else int(o.get("padding", 0))
            groups, bn = int(o.get("groups", 1)), int(o.get("batch_normalize", 0))
            biases = draw(n, scale=0.1)
            if bn:
                scales, mean, var = draw(n, low=0.5), draw(n, scale=0.1), draw(n, low=0.5)
            c = prev.shape[0]
            w = draw(n, c // groups, size, size, scale=(2 / (c // groups * size * size)) ** 0.5)
            y = _conv(prev, w, stride, pad, groups)
            if bn:
                y = _batchnorm(y, scales, mean, var)
            y = ACT[o.get("activation", "logistic")](y + biases[:, None, None])
        elif kind == "connected":
            n, bn = int(o["output"]), int(o.get("batch_normalize", 0))
            flat = prev.ravel()
            biases = draw(n, scale=0.1)
            if transpose:
                w = draw(flat.size, n, scale=flat.size ** -0.5).T
            else:
                w = draw(n, flat.size, scale=flat.size ** -0.5)
            y = w @ flat
            if bn:
                scales, mean, var = draw(n, low=0.5), draw(n, scale=0.1), draw(n, low=0.5)
                y = _batchnorm(y, scales, mean, var)
            y = ACT[o.get("activation", "logistic")](y + biases)
        elif kind == "maxpool":
            stride = int(o.get("stride", 1))
            size = int(o.get("size", stride))
            y = _maxpool(prev, size, stride, int(o.get("padding", size - 1)))
        elif kind == "avgpool":
            y = prev.mean(axis=(1, 2), keepdims=True)
        elif kind == "upsample":
            s = int(o.get("stride", 2))
            y = prev.repeat(s, axis=1).repeat(s, axis=2)
        elif kind == "shortcut":
            k = int(o["from"])
            y = ACT[o.get("activation", "linear")](prev + out[k if k >= 0 else len(out) + k])
        elif kind == "route":
            groups, gid = int(o.get("groups", 1)), int(o.get("group_id", 0))
            parts = []
            for k in map(int, o["layers"].split(",")):
                t = out[k if k >= 0 else len(out) + k]
                part = t.shape[0] // groups
                parts.append(t[gid * part:(gid + 1) * part])
            y = np.concatenate(parts)
        elif kind == "softmax":
            e = np.exp(prev.ravel() - prev.max())
            y = e / e.sum()
        elif kind in ("dropout", "cost"):
            y = prev
        elif kind == "yolo":
            outputs.append(prev)
            y = None  # Darknet decodes here; nothing of this model reads it
        else:
            raise AssertionError(kind)
        out.append(y)
    if out[-1] is not None:
        outputs.append(out[-1])
    return floats, outputs


def _write_weights(path: Path, floats, version=(0, 2, 0), seen=64_000):
    major, minor, revision = version
    wide = major * 10 + minor >= 2 and major < 1000 and minor < 1000
    header = struct.pack("<3i", major, minor, revision) + struct.pack("<q" if wide else "<i", seen)
    path.write_bytes(header + np.concatenate(floats).astype("<f4").tobytes())


def _compiled(graph, weights_path):
    torch = pytest.importorskip("torch")
    net = _spec(graph)
    module = net.to_torch().eval()
    state = {k: torch.from_numpy(v) for k, v in darknet.read_weights(graph, weights_path).items()}
    for key, value in module.state_dict().items():  # PyTorch's counter; Darknet keeps none
        if key.endswith("num_batches_tracked"):
            state.setdefault(key, torch.zeros_like(value))
    module.load_state_dict(state, strict=True)
    return module


def _max_difference(module, x, reference) -> float:
    torch = pytest.importorskip("torch")
    with torch.no_grad():
        got = module(torch.from_numpy(x[None].astype(np.float32)))
    got = got if isinstance(got, tuple) else (got,)
    assert [tuple(g.shape[1:]) for g in got] == [r.shape for r in reference]
    return max(float(np.abs(g[0].double().numpy() - r).max() / max(1.0, np.abs(r).max()))
               for g, r in zip(got, reference))


def test_tiny_yolo_weights_match_darknet(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (3, 64, 64))
    floats, reference = _darknet(TINY.read_text(), x, rng)
    path = tmp_path / "tiny_yolo.weights"
    _write_weights(path, floats)
    graph = darknet.load(TINY)
    # the file holds the 128,690 parameters and each batch norm's running mean and variance:
    # 2 * (8 + 16 + 32 + 64 + 64 + 32 + 64 + 32 + 64 + 16 + 32) = 2 * 424 = 848 floats more
    assert sum(f.size for f in floats) == 128_690 + 848
    module = _compiled(graph, path)
    assert _max_difference(module, x, reference) <= 1e-5


@pytest.mark.parametrize("version", [(0, 2, 0), (0, 1, 0), (1001, 0, 0)], ids=["0.2 int64 seen", "0.1 int32 seen",
                                                                                 "transposed connected"])
def test_groups_weights_match_darknet(tmp_path, version):
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (3, 40, 40))
    floats, reference = _darknet(GROUPS.read_text(), x, rng, transpose=version[0] > 1000)
    path = tmp_path / "groups.weights"
    _write_weights(path, floats, version)
    module = _compiled(darknet.load(GROUPS), path)
    assert _max_difference(module, x, reference) <= 1e-5


def test_batch_norm_divides_as_darknet(tmp_path):
    """Darknet divides by sqrt(variance) + 1e-6, PyTorch by sqrt(variance + 1e-5): the running variances are
    adjusted so that small ones (where the two differ most) give Darknet's values; one below eps cannot be,
    and a warning says so."""
    torch = pytest.importorskip("torch")
    cfg = tmp_path / "bn.cfg"
    cfg.write_text("[net]\nwidth=2\nheight=2\nchannels=1\n[convolutional]\nbatch_normalize=1\nfilters=6\n"
                   "size=1\nactivation=linear\n")
    variances = np.array([1e-4, 1e-3, 1e-2, 1.0, 100.0, 1e-7], np.float32)
    # biases (bn shift) 0, scales 1, rolling means 0, the variances, weights 1: y = x / (sqrt(v) + 1e-6)
    floats = [np.zeros(6), np.ones(6), np.zeros(6), variances, np.ones(6)]
    _write_weights(tmp_path / "bn.weights", floats)
    graph = darknet.load(cfg)
    module = _compiled(graph, tmp_path / "bn.weights")
    with torch.no_grad():
        y = module(torch.ones(1, 1, 2, 2))[0, :, 0, 0].double().numpy()
    expected = 1 / (np.sqrt(variances.astype(np.float64)) + 1e-6)
    assert np.allclose(y[:5], expected[:5], rtol=1e-6, atol=0)
    assert abs(y[5] - 1e-5 ** -0.5) < 1e-3  # clamped: 1 / sqrt(eps), where Darknet gives 1 / (3.2e-4 + 1e-6)
    assert any("1 running variance is below" in w for w in graph.warnings)


def test_weight_plan_order():
    """load_convolutional_weights: biases, [scales, rolling mean, rolling variance], weights; a connected
    layer's batch norm after its weights."""
    plan = darknet.weight_plan(darknet.load(GROUPS))
    keys = [key for key, _, _ in plan]
    assert keys[:5] == ["bn0.bias", "bn0.weight", "bn0.running_mean", "bn0.running_var", "conv0.weight"]
    assert keys[keys.index("conv12.weight") - 1] == "conv12.bias"
    assert keys[-7:] == ["bn13.bias", "fc13.weight", "bn13.weight", "bn13.running_mean", "bn13.running_var",
                         "fc15.bias", "fc15.weight"]
    shapes = dict((key, shape) for key, shape, _ in plan)
    assert shapes["conv5.weight"] == (16, 8, 3, 3) and shapes["fc13.weight"] == (24, 288)


# ---- Darknet's pooling padding ---------------------------------------------------------------------------


def test_maxpool_padding_rule_matches_darknet(tmp_path):
    """Every size/stride/padding on small maps: the importer's pooling (with the upsample rewriting where
    the padding is one cell more after, at stride 1) takes Darknet's maxima; the default padding always
    imports."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    rng = np.random.default_rng(2)
    rewritten = imported = 0
    for h, w in ((1, 1), (2, 3), (4, 4), (5, 7), (6, 6), (9, 8)):
        x = rng.normal(0, 1, (2, h, w))
        for size in range(1, 5):
            for stride in range(1, 4):
                for padding in (None, 0, 1, 2, 3, 4):
                    path = tmp_path / "pool.cfg"
                    keys = f"size={size}\nstride={stride}\n" + ("" if padding is None else f"padding={padding}\n")
                    path.write_text(f"[net]\nwidth={w}\nheight={h}\nchannels=2\n[maxpool]\n{keys}")
                    try:
                        graph = darknet.load(path)
                    except ImportFailure:
                        assert padding is not None, (h, w, size, stride)
                        continue
                    imported += 1
                    y = torch.from_numpy(x[None])
                    for layer in graph.layers:
                        a = layer.args
                        if layer.op == "upsample":
                            rewritten += 1
                            y = F.interpolate(y, scale_factor=a["scale"], mode="nearest")
                        else:
                            y = F.max_pool2d(y, a["kernel"], a["stride"], a["pad"], ceil_mode=a["ceil"])
                    expected = _maxpool(x, size, stride, size - 1 if padding is None else padding)
                    assert y.shape[1:] == expected.shape == graph.layers[-1].shape, (h, w, size, stride, padding)
                    assert np.array_equal(y[0].numpy(), expected), (h, w, size, stride, padding)
    assert imported > 250 and rewritten > 20


# ---- malformed files -------------------------------------------------------------------------------------

NET = "[net]\nwidth=8\nheight=8\nchannels=3\n"  # lines 1-4
CONV = "[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=leaky\n"  # layer 0, lines 5-9

MALFORMED = [
    # (body after [net], line, column, words of the message, words of the help)
    ("[convolutional]\nbatch_normalize=1\nfilters=8\nsi", 8, 1, "expected `key=value`", "cut short"),
    (CONV + "[convolu", 10, 1, "is not closed", "[convolutional]"),
    (CONV + "[reorg]\nstride=2\n", 10, 1, "layer [reorg] is not supported", "[route]"),
    (CONV + "[route]\nlayers=5\n", 11, 8, "layer 5 is not a layer before it", "earlier layer"),
    (CONV + "[route]\nlayers=-1, -9\n", 11, 12, "layer -8 is before layer 0", "earlier layer"),
    (CONV + CONV.replace("=4", "=8") + "[shortcut]\nfrom=-2\n", 16, 6, "a shortcut adds tensors of one shape",
     "same shape"),
    ("[convolutional]\nfilters=1.5\n", 6, 9, "`filters` must be an integer, got `1.5`", "filters="),
    ("[convolutional]\nfilters=4\nactivation=mish\n", 7, 12, "activation `mish` is not supported", "mish"),
    ("[convolutional]\nfilters=4\ndilation=2\n", 7, 1, "`dilation` of [convolutional] is not supported",
     "`filters`"),
    (CONV.replace("=4", "=20") + "[yolo]\nmask=0,1,2\nclasses=2\nnum=6\n", 10, 1, "takes 20 channels", "filters=21"),
    (CONV.replace("=4", "=21") + "[yolo]\nmask=0,1,2\nclasses=2\n[convolutional]\nfilters=4\n", 13, 1,
     "reads the output of layer 1, the [yolo] head on line 10", "[route]"),
    (CONV.replace("=4", "=21") + "[yolo]\nmask=0,1,2\nclasses=2\n[route]\nlayers=0,1\n", 14, 10,
     "a reference to layer 1, the [yolo] head", "feeding the head"),
    (CONV + "[route]\nlayers=-1\ngroups=3\n", 12, 8, "4 channels, which do not split into 3 groups", "groups"),
    (CONV + "[maxpool]\nsize=2\nstride=1\nstride=2\n", 13, 1, "`stride` is given twice", "keep one"),
    ("[yolo]\nmask=0\nclasses=2\nnum=1\n", 5, 1, "the [yolo] head reads the network's input, 3 channels, but its "
     "1 anchors x (2 classes + 5) need 7", "[convolutional] layer: put one with filters=7 before it"),
    (CONV + "[shortcut]\nfrom=-1\n", 11, 6, "adds layer 0's output to itself", "distinct"),
    ("[connected]\noutput=5\n[convolutional]\nfilters=2\n", 7, 1, "needs an image", "[connected]"),
    (CONV + "[upsample]\nstride=2\nscale=0.5\n", 12, 1, "`scale` of [upsample] is not supported", "`stride`"),
]


@pytest.mark.parametrize("body,line,col,message,help", MALFORMED,
                         ids=[" ".join(m[3].split()[:4]) for m in MALFORMED])
def test_malformed_cfg_is_located(tmp_path, body, line, col, message, help):
    path = tmp_path / "bad.cfg"
    text = NET + body
    path.write_text(text)
    with pytest.raises(ImportFailure) as info:
        darknet.load(path)
    diagnostic, _ = info.value.diagnostic()
    assert (diagnostic.span.file, diagnostic.span.line, diagnostic.span.col) == (str(path), line, col), \
        diagnostic.render({str(path): text})
    assert message in diagnostic.message and help in diagnostic.help
    shown = diagnostic.render({str(path): text})
    assert shown.startswith(f"{path}:{line}:{col}: error: ") and "help: " in shown


VALUES = ["0", "-1", "-9", "1", "3", "40", "x", "2.5", "", "leaky", "7,-2", "99999"]
EDITS = st.lists(st.tuples(st.sampled_from(["delete", "duplicate", "value", "cut"]), st.integers(0, 10_000),
                           st.sampled_from(VALUES)), min_size=1, max_size=4)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=EDITS)
def test_edited_cfg_imports_or_fails_located(tmp_path, edits):
    """Lines deleted, duplicated, values changed, the file cut: the import succeeds, with the shapes the
    compiled spec computes too, or fails with a located ImportFailure; never another exception."""
    lines = TINY.read_text().split("\n")
    for what, at, value in edits:
        k = at % len(lines)
        if what == "delete":
            del lines[k]
        elif what == "duplicate":
            lines.insert(k, lines[k])
        elif what == "value" and "=" in lines[k]:
            lines[k] = lines[k].split("=")[0] + "=" + value
        elif what == "cut":
            text = "\n".join(lines)
            lines = text[:at % (len(text) + 1)].split("\n")
        lines = lines or [""]
    path = tmp_path / "edited.cfg"
    path.write_text("\n".join(lines))
    try:
        graph = darknet.load(path)
    except ImportFailure as e:
        diagnostic, _ = e.diagnostic()
        assert diagnostic.span is not None and diagnostic.span.file == str(path), diagnostic.message
        assert 1 <= diagnostic.span.line <= len(lines) and diagnostic.help
        return
    try:
        net = _spec(graph)
    except ImportFailure:  # a data flow lifting does not write yet
        return
    outputs = graph.outputs or (graph.output,)
    assert list(net.output_shapes.values()) == [graph.layer(o).shape for o in outputs]


def test_net_section_problems(tmp_path):
    path = tmp_path / "bad.cfg"
    path.write_text("[net]\nbatch=1\n" + CONV)
    with pytest.raises(ImportFailure, match="width, height and channels") as info:
        darknet.load(path)
    assert info.value.span.line == 1
    path.write_text(CONV)
    with pytest.raises(ImportFailure, match="not \\[net\\]"):
        darknet.load(path)
    path.write_text("# nothing\n")
    with pytest.raises(ImportFailure, match="no sections"):
        darknet.load(path)
    path.write_bytes(b"[net]\n" + b"#" * (darknet.MAX_CFG_BYTES + 1))
    with pytest.raises(ImportFailure, match="more than"):
        darknet.load(path)


def test_malformed_weights_say_what_was_expected(tmp_path):
    rng = np.random.default_rng(3)
    floats, _ = _darknet(GROUPS.read_text(), rng.normal(0, 1, (3, 40, 40)), rng)
    graph = darknet.load(GROUPS)
    expected = sum(f.size for f in floats)
    path = tmp_path / "groups.weights"
    _write_weights(path, floats)
    data = path.read_bytes()
    cases = [(data[:-40], f"the file has {expected - 10:,}: it is too short"),
             (data + b"\0" * 4, f"the file has {expected + 1:,}: it is too long"),
             (data + b"\0" * 2, "it is too long"),
             (data[:14], "the file has none: it is too short"),
             (data[:8], "too short for a Darknet header")]
    for content, words in cases:
        path.write_bytes(content)
        with pytest.raises(ImportFailure) as info:
            darknet.read_weights(graph, path)
        diagnostic, _ = info.value.diagnostic()
        assert words in diagnostic.message and diagnostic.message.startswith(f"{path}: ")
        assert f"{expected:,} floats" in diagnostic.message or "header" in diagnostic.message
        assert diagnostic.help


# ---- the command ------------------------------------------------------------------------------------------


def test_cli_writes_spec_and_state_dict(tmp_path):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, (3, 64, 64))
    floats, reference = _darknet(TINY.read_text(), x, rng)
    weights = tmp_path / "tiny.weights"
    _write_weights(weights, floats)
    out, state = tmp_path / "tiny.cnn", tmp_path / "tiny.pt"
    result = CliRunner().invoke(cli, ["import", str(TINY), "--weights", str(weights), "-o", str(out),
                                      "--state-dict", str(state)])
    assert result.exit_code == 0, result.output
    assert "128,690" in result.output and "not part of the spec" in result.output
    module = graphdsl.load(out).to_torch().eval()
    module.load_state_dict(torch.load(state), strict=True)
    assert _max_difference(module, x, reference) <= 1e-5


def test_cli_errors_are_located_and_write_nothing(tmp_path):
    bad = tmp_path / "bad.cfg"
    bad.write_text(NET + CONV + "[route]\nlayers=3\n")
    out = tmp_path / "bad.cnn"
    result = CliRunner().invoke(cli, ["import", str(bad), "-o", str(out)])
    assert result.exit_code == 1
    assert f"{bad}:11:8: error: layer 3 is not a layer before it" in result.output
    assert "help: " in result.output and "Traceback" not in result.output and not out.exists()
    weights = tmp_path / "short.weights"
    weights.write_bytes(struct.pack("<3iq", 0, 2, 0, 0) + b"\0" * 8)
    result = CliRunner().invoke(cli, ["import", str(TINY), "--weights", str(weights), "-o", str(out),
                                      "--state-dict", str(tmp_path / "w.pt")])
    assert result.exit_code == 1 and "floats" in result.output and "too short" in result.output
    assert not out.exists() and not (tmp_path / "w.pt").exists()


# ---- real cfgs whose routes read tensors out of the chain's order --------------------------------------------
# yolov3.cfg and yolov4-tiny.cfg are the published cfgs (pjreddie/darknet, AlexeyAB/darknet); res_route.cfg
# (a route to a shortcut's output) and merge_in_branch.cfg (a tensor two concats read) are their problems
# cut down. Lifted flat (the front end's graph as it is) and with the inferred blocks, they give the same
# figures: the blocks change the spec's text, never what it computes.

RES_ROUTE = DATA / "res_route.cfg"
MERGE_IN_BRANCH = DATA / "merge_in_branch.cfg"


def _figures(net):
    return net.params, net.macs, net.output_shapes


def _flat_and_inferred(path: Path):
    from graphdsl.importers.command import file_graph

    flat = darknet.load(path)
    inferred = file_graph(path)
    return _spec(flat), _spec(inferred), print_module(lift.lift(inferred))


def test_route_to_a_shortcut_output_names_it():
    flat, inferred, text = _flat_and_inferred(RES_ROUTE)
    # conv0, conv1, conv3: 3 * (4 * 4 * 9 + 4) = 444 parameters; the route concatenates 4 + 4 channels
    assert _figures(flat) == _figures(inferred) == (444, 3 * 4 * 4 * 9 * 64, {"output": (8, 8, 8)})
    assert "add2 = add(" in text and "concat(leaky_relu3, add2)" in text, text


def test_tensor_read_by_two_concats():
    flat, inferred, text = _flat_and_inferred(MERGE_IN_BRANCH)
    # conv0, conv1 4 -> 4, conv3 reads the 8 channels of the first concat: 2 * 148 + 292 = 588
    assert _figures(flat) == _figures(inferred) == (588, (2 * 4 * 4 + 8 * 4) * 9 * 64, {"output": (8, 8, 8)})
    assert "concat(leaky_relu1, leaky_relu0)" in text and "concat(leaky_relu3, leaky_relu1)" in text, text


@pytest.mark.parametrize("cfg", [RES_ROUTE, MERGE_IN_BRANCH])
def test_named_tensors_keep_darknet_weights(tmp_path, cfg):
    from graphdsl.importers.command import file_graph

    rng = np.random.default_rng(5)
    x = rng.normal(0, 1, (4, 8, 8))
    floats, reference = _darknet(cfg.read_text(), x, rng)
    path = tmp_path / "net.weights"
    _write_weights(path, floats)
    assert _max_difference(_compiled(file_graph(cfg), path), x, reference) <= 1e-5


def test_yolov3_imports_with_darknet53_stages():
    flat, inferred, text = _flat_and_inferred(DATA / "yolov3.cfg")
    assert _figures(flat) == _figures(inferred)
    assert inferred.params == 61_949_149  # Darknet's own count for yolov3.cfg
    assert inferred.output_shapes == {"conv81": (255, 13, 13), "conv93": (255, 26, 26), "conv105": (255, 52, 52)}
    assert "stage2: [residual_block(128) * 8]" in text and "concat(upsample85, stage3)" in text, text
    assert len(text.splitlines()) < 80, text


def test_yolov4_tiny_imports():
    flat, inferred, text = _flat_and_inferred(DATA / "yolov4-tiny.cfg")
    assert _figures(flat) == _figures(inferred)
    assert inferred.params == 6_056_606
    assert inferred.output_shapes == {"conv29": (255, 13, 13), "conv36": (255, 26, 26)}
    assert "channels(c // 2, c)" in text and "concat(upsample33, leaky_relu23)" in text, text


# ---- a layer routed twice, sections without keys, bytes that are not UTF-8 --------------------------------

SELF_ROUTE = NET + CONV + "[route]\nlayers=-1,-1\n" + "[route]\nlayers=0,-1,0\ngroups=2\ngroup_id=1\n" + \
    "[convolutional]\nfilters=2\nsize=1\nactivation=linear\n"


def test_route_listing_a_layer_twice_concatenates_it_with_itself(tmp_path):
    """Darknet accepts `layers=-1,-1` (a concat of a tensor with itself): so does the import."""
    path = tmp_path / "self_route.cfg"
    path.write_text(SELF_ROUTE)
    graph = darknet.load(path)
    concat1, concat2 = (layer for layer in graph.layers if layer.op == "concat")
    assert concat1.inputs == ("leaky_relu0", "leaky_relu0") and concat1.shape == (8, 8, 8)
    # the second half of each of layer 0 (4 channels), layer 1 (8) and layer 0 again: 2 + 4 + 2
    assert [graph.layer(i).args for i in concat2.inputs] == [{"start": 2, "stop": 4}, {"start": 4, "stop": 8},
                                                            {"start": 2, "stop": 4}]
    assert concat2.shape == (8, 8, 8) and graph.layer("conv3").args["out"] == 2
    # end to end: the compiled spec computes Darknet's outputs
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (3, 8, 8))
    floats, reference = _darknet(SELF_ROUTE, x, rng)
    weights = tmp_path / "self_route.weights"
    _write_weights(weights, floats)
    assert _max_difference(_compiled(graph, weights), x, reference) <= 1e-5


def test_a_section_without_keys_is_built_from_darknet_defaults_with_a_warning(tmp_path):
    """A file cut right after `[convolutional]`: Darknet builds a 1x1 conv of one filter with a logistic
    activation from its defaults (announcing each); the import does the same and says so."""
    path = tmp_path / "cut.cfg"
    path.write_text(NET + CONV + "[convolutional]\n")
    graph = darknet.load(path)
    assert [(layer.op, layer.args) for layer in graph.layers[-2:]] == [
        ("conv", {"out": 1, "kernel": 1, "stride": 1, "pad": 0, "groups": 1, "bias": True}), ("sigmoid", {})]
    (warning,) = graph.warnings
    assert warning == (f"[convolutional] at {path}:10 has no keys: it is built from Darknet's defaults (filters=1, "
                       "size=1, stride=1, activation=logistic); is the file cut short?")
    path.write_text(NET + CONV + "[avgpool]\n[softmax]\n[cost]\n")  # sections that take no keys
    assert darknet.load(path).warnings == []


def test_bytes_that_are_not_utf8_in_comments(tmp_path):
    """Darknet reads bytes: a cfg with comments in GBK or Latin-1 imports; such a byte in a key or value
    is a located error, its caret on the byte."""
    path = tmp_path / "gbk.cfg"
    path.write_bytes(b"# \xc4\xe3\xba\xc3\n" + NET.encode() + b"; caf\xe9\n" + CONV.encode().replace(
        b"filters=4", b"filters=4  # \xff\xfe"))
    graph = darknet.load(path)
    assert graph.layer("conv0").args["out"] == 4
    odd = CONV.encode().replace(b"activation=leaky", b"activation=l\xe9aky")
    path.write_bytes(b"# \xc4\xe3\n" + NET.encode() + odd)
    with pytest.raises(ImportFailure) as info:
        darknet.load(path)
    diagnostic, sources = info.value.diagnostic()
    shown = diagnostic.render(sources)
    assert shown.startswith(f"{path}:10:13: error: byte 0xE9 is not UTF-8 text"), shown
    assert "Darknet reads bytes" in diagnostic.help and "spec" not in diagnostic.help
    assert "activation=l\ufffdaky" in shown and "\udce9" not in shown

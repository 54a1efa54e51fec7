"""`graphdsl import` of Caffe prototxt (graphdsl/importers/caffe.py, prototxt.py, prototxt.lark).

The fixtures in tests/data/caffe/ are written after the published deploy files (BVLC AlexNet and
GoogLeNet, Kaiming He's ResNet-50, Caffe's LeNet example). Every figure below is computed by hand in
the comments, never taken from the importer."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphdsl
from graphdsl.importers import ImportFailure, caffe, lift
from graphdsl.importers.ir import INPUT
from graphdsl.printer import print_module

DATA = Path(__file__).parent / "data" / "caffe"


def spec_of(graph) -> str:
    return print_module(lift.lift(graph))


def network(graph):
    return graphdsl.load(text=spec_of(graph))


def out_shape(net):
    (shape,) = net.output_shapes.values()
    return tuple(shape)


def failure(tmp_path, text: str, name="net.prototxt", **kw) -> tuple[str, str]:
    """The rendered diagnostic of importing `text`, and the file's path."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ImportFailure) as info:
        caffe.load(path, **kw)
    diagnostic, sources = info.value.diagnostic()
    assert diagnostic.help, diagnostic.render(sources)
    return diagnostic.render(sources), str(path)


def caffe_conv(size, k, s=1, p=0, d=1):
    return (size + 2 * p - (d * (k - 1) + 1)) // s + 1


def caffe_pool(size, k, s, p=0):
    """Caffe's pooled size (pooling_layer.cpp), written again here: round up, clip a last window
    starting in the padding."""
    out = math.ceil((size + 2 * p - k) / s) + 1
    if p and (out - 1) * s >= size + p:
        out -= 1
    return out


# ---- (a) AlexNet, the two-GPU definition ------------------------------------------------------------------


def test_alexnet_figures_by_hand():
    graph = caffe.load(DATA / "alexnet.prototxt")
    shapes = {layer.name: layer.shape for layer in graph.layers}
    # 227 -> conv1 (11, /4): (227 - 11) / 4 + 1 = 55 -> pool1 (3, /2): ceil(52 / 2) + 1 = 27
    # -> conv2 (5, pad 2): 27 -> pool2: ceil(24 / 2) + 1 = 13 -> conv3..5 (3, pad 1): 13 -> pool5: 6
    assert shapes["conv1"] == (96, 55, 55) and shapes["pool1"] == (96, 27, 27)
    assert shapes["conv2"] == (256, 27, 27) and shapes["pool2"] == (256, 13, 13)
    assert shapes["conv5"] == (256, 13, 13) and shapes["pool5"] == (256, 6, 6)
    # the prototxt's num_output, and its groups (conv2, conv4, conv5 on two GPUs)
    convs = {layer.name: (layer.args["out"], layer.args["groups"]) for layer in graph.layers if layer.op == "conv"}
    assert convs == {"conv1": (96, 1), "conv2": (256, 2), "conv3": (384, 1), "conv4": (384, 2), "conv5": (256, 2)}
    assert [layer.args["out"] for layer in graph.layers if layer.op == "linear"] == [4096, 4096, 1000]
    # in place: norm1 reads relu1's version of `conv1`, fc7 the dropout's version of `fc6`
    assert graph.layer("norm1").inputs == ("relu1",) and graph.layer("fc7").inputs == ("drop6",)
    assert graph.layer("norm1").args == {"size": 5, "alpha": 0.0001, "beta": 0.75, "k": 1.0}
    assert graph.layer("conv1").where == f"{DATA / 'alexnet.prototxt'}:10"  # the `layer {` line
    net = network(graph)
    # params: conv1 96*3*11*11 + 96 = 34,944; conv2 256*48*5*5 + 256 = 307,456; conv3 384*256*9 + 384
    # = 885,120; conv4 384*192*9 + 384 = 663,936; conv5 256*192*9 + 256 = 442,624; fc6 4096*9216 + 4096
    # = 37,752,832; fc7 4096*4096 + 4096 = 16,781,312; fc8 1000*4096 + 1000 = 4,097,000
    assert net.params == 60_965_224
    # MACs: conv1 55*55*96 * 3*121 = 105,415,200; conv2 27*27*256 * 48*25 = 223,948,800; conv3
    # 13*13*384 * 256*9 = 149,520,384; conv4 13*13*384 * 192*9 = 112,140,288; conv5 13*13*256 * 192*9
    # = 74,760,192; fc6 9216*4096 = 37,748,736; fc7 16,777,216; fc8 4,096,000
    assert net.macs == 724_406_816
    assert out_shape(net) == (1000,)


# ---- (b) GoogLeNet's inception_3a and 3b ------------------------------------------------------------------

INCEPTION_CONVS = {  # layer: (num_output, kernel) as in BVLC googlenet
    "conv1_7x7_s2": (64, 7), "conv2_3x3": (192, 3),
    "inception_3a_1x1": (64, 1), "inception_3a_3x3_reduce": (96, 1), "inception_3a_3x3": (128, 3),
    "inception_3a_5x5_reduce": (16, 1), "inception_3a_5x5": (32, 5), "inception_3a_pool_proj": (32, 1),
    "inception_3b_1x1": (128, 1), "inception_3b_3x3_reduce": (128, 1), "inception_3b_3x3": (192, 3),
    "inception_3b_5x5_reduce": (32, 1), "inception_3b_5x5": (96, 5), "inception_3b_pool_proj": (64, 1),
}
# params: conv1 64*3*49 + 64 = 9,472; conv2 192*64*9 + 192 = 110,784;
# 3a (in 192): 64*192 + 96*192 + 128*96*9 + 16*192 + 32*16*25 + 32*192 = 163,328 weights + 368 biases
#   = 163,696; 3b (in 256): 128*256 + 128*256 + 192*128*9 + 32*256 + 96*32*25 + 64*256 = 388,096
#   weights + 640 biases = 388,736; classifier 480*1000 + 1000 = 481,000
INCEPTION_PARAMS = 9_472 + 110_784 + 163_696 + 388_736 + 481_000  # 1,153,688
# MACs: conv1 56*56*64 * 3*49 = 29,503,488; conv2 28*28*192 * 64*9 = 86,704,128; 3a 14*14 * 163,328 =
# 32,012,288; 3b 14*14 * 388,096 = 76,066,816; classifier 480,000
INCEPTION_MACS = 29_503_488 + 86_704_128 + 32_012_288 + 76_066_816 + 480_000  # 224,766,720


def test_inception_stage_graph():
    graph = caffe.load(DATA / "inception_stage.prototxt")
    assert {layer.name: (layer.args["out"], layer.args["kernel"]) for layer in graph.layers
            if layer.op == "conv"} == INCEPTION_CONVS
    shapes = {layer.name: layer.shape for layer in graph.layers}
    # 112 -> conv1 (7, /2, pad 3): 56 -> pool1 (3, /2): ceil(53 / 2) + 1 = 28 (rounding down: 27)
    # -> pool2: ceil(25 / 2) + 1 = 14 (13) -> pool3: ceil(11 / 2) + 1 = 7 (6) -> pool5 (7): 1
    assert shapes["conv1_7x7_s2"] == (64, 56, 56) and shapes["pool1_3x3_s2"] == (64, 28, 28)
    assert shapes["pool2_3x3_s2"] == (192, 14, 14) and shapes["pool3_3x3_s2"] == (480, 7, 7)
    assert shapes["pool5_7x7_s1"] == (480, 1, 1)
    # the concats: 64 + 128 + 32 + 32 = 256 and 128 + 192 + 96 + 64 = 480 channels
    assert shapes["inception_3a_output"] == (256, 14, 14) and shapes["inception_3b_output"] == (480, 14, 14)
    assert graph.layer("inception_3a_output").inputs == ("inception_3a_relu_1x1", "inception_3a_relu_3x3",
                                                         "inception_3a_relu_5x5", "inception_3a_relu_pool_proj")
    assert all(layer.args["ceil"] for layer in graph.layers if layer.op == "maxpool")
    assert graph.layer("inception_3a_1x1").path == "inception_3a_1x1"  # `inception_3a/1x1`, sanitized
    # the figures of the graph, layer by layer through graphdsl's operators
    params = macs = 0
    for layer in graph.layers:
        if layer.op in ("conv", "linear"):
            c_in = graph.layer(layer.inputs[0]).shape[0] if layer.inputs[0] != INPUT else graph.input_shape[0]
            k = layer.args.get("kernel", 1)
            weights = layer.args["out"] * c_in * k * k
            params += weights + layer.args["out"]
            macs += weights * math.prod(layer.shape[1:])
    assert (params, macs) == (INCEPTION_PARAMS, INCEPTION_MACS)


def test_inception_stage_spec():
    net = network(caffe.load(DATA / "inception_stage.prototxt"))
    assert net.params == INCEPTION_PARAMS and net.macs == INCEPTION_MACS
    assert out_shape(net) == (1000,)


# ---- (c) ResNet-50's res2 stage with BatchNorm + Scale ----------------------------------------------------


def test_resnet_stage_figures_by_hand():
    graph = caffe.load(DATA / "resnet_stage.prototxt")
    # each BatchNorm + Scale(bias_term) is one affine `bn` under the BatchNorm's name; no Scale is left
    bns = [layer for layer in graph.layers if layer.op == "bn"]
    assert len(bns) == 1 + 4 + 3 + 3 and all(layer.args["affine"] for layer in bns)
    assert not any(layer.op == "scale" for layer in graph.layers)
    assert graph.layer("bn2a_branch1").path == "bn2a_branch1"
    # in place: res2b's first conv reads the ReLU after the sum, not the sum
    assert graph.layer("res2b_branch2a").inputs == ("res2a_relu",)
    assert graph.layer("res2a").inputs == ("bn2a_branch2c", "bn2a_branch1")
    assert graph.layer("pool1").shape == (64, 56, 56)  # 112: ceil((112 - 3) / 2) + 1 = 56 (rounding down: 55)
    net = network(graph)
    # params: conv1 64*3*49 = 9,408 + bn 2*64; res2a: 256*64 + 64*64 + 64*64*9 + 256*64 = 73,728 weights
    # + bn 2*(256 + 64 + 64 + 256) = 1,280 -> 75,008; res2b, res2c: 64*256 + 64*64*9 + 256*64 = 69,632
    # + bn 2*(64 + 64 + 256) = 768 -> 70,400 each; fc1000 256*1000 + 1000 = 257,000
    assert net.params == 9_408 + 128 + 75_008 + 2 * 70_400 + 257_000  # 482,344
    # MACs: conv1 112*112*64 * 3*49 = 118,013,952; res2a 56*56 * 73,728 = 231,211,008; res2b, res2c
    # 56*56 * 69,632 = 218,365,952 each; fc1000 256,000
    assert net.macs == 118_013_952 + 231_211_008 + 2 * 218_365_952 + 256_000  # 786,212,864
    assert out_shape(net) == (1000,)
    text = spec_of(graph)
    assert text.count("residual {") == 3 and text.count("} shortcut {") == 1



@pytest.mark.parametrize("fixture, blocks", [("resnet_stage.prototxt", "`Bottleneck`, 3 blocks: res2.0"),
                                             ("inception_stage.prototxt", "`Inception`, 2 blocks: inception_3.0")])
def test_cli_writes_inferred_blocks_with_the_flat_figures(fixture, blocks):
    """Through the command line, to stdout: the blocks infer_scopes finds (said to be inferred), with the
    figures of the flat graph lifted as it is."""
    run = subprocess.run([sys.executable, "-m", "graphdsl.cli", "import", str(DATA / fixture), "-o", "-"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert blocks in run.stdout, run.stdout
    net, flat = graphdsl.load(text=run.stdout), network(caffe.load(DATA / fixture))
    assert (net.params, net.macs, net.output_shapes) == (flat.params, flat.macs, flat.output_shapes)


# ---- the old syntax, training layers -----------------------------------------------------------------------


def test_lenet_v1_train_val():
    warnings: list[str] = []
    graph = caffe.load(DATA / "lenet_v1_train_val.prototxt", input_shape=(1, 28, 28), warnings=warnings)
    assert [layer.op for layer in graph.layers] == ["conv", "maxpool", "conv", "maxpool", "flatten", "linear",
                                                    "relu", "linear"]
    assert len(warnings) == 4 and "TRAIN" in warnings[0] and "loss" in warnings[3]
    net = network(graph)
    # 28 -> conv 5: 24 -> pool 2: 12 -> conv 5: 8 -> pool 2: 4; conv1 20*25 + 20 = 520; conv2 50*20*25 + 50
    # = 25,050; ip1 500*800 + 500 = 400,500; ip2 10*500 + 10 = 5,010
    assert net.params == 431_080
    # MACs: 24*24*20*25 = 288,000; 8*8*50*500 = 1,600,000; 400,000; 5,000
    assert net.macs == 2_293_000


# ---- layer by layer: what each Caffe layer becomes --------------------------------------------------------

HEAD = 'name: "t"\ninput: "data"\ninput_shape { dim: 1 dim: 8 dim: 9 dim: 9 }\n'


def layer(name, kind, bottoms, top, body=""):
    bottoms = "".join(f' bottom: "{b}"' for b in ([bottoms] if isinstance(bottoms, str) else bottoms))
    return f'layer {{ name: "{name}" type: "{kind}"{bottoms} top: "{top}" {body} }}\n'


def load_text(tmp_path, text, **kw):
    path = tmp_path / "net.prototxt"
    path.write_text(text)
    return caffe.load(path, **kw)


def test_layers_translated(tmp_path):
    text = HEAD + (
        layer("bn", "BatchNorm", "data", "data", "batch_norm_param { eps: 0.001 }")
        + layer("scale", "Scale", "data", "data")  # no bias_term: bn without affine, then `scale`
        + layer("leaky", "ReLU", "data", "data", "relu_param { negative_slope: 0.1 }")
        + layer("sig", "Sigmoid", "data", "data") + layer("tanh", "TanH", "data", "data")
        + layer("gap", "Pooling", "data", "g", "pooling_param { pool: AVE global_pooling: true }")
        + layer("flat", "Flatten", "g", "f")
        + layer("ip", "InnerProduct", "f", "ip", "inner_product_param { num_output: 3 bias_term: false }")
        + layer("drop", "Dropout", "ip", "ip", "dropout_param { dropout_ratio: 0.25 }")
        + layer("prob", "Softmax", "ip", "prob"))
    graph = load_text(tmp_path, text)
    ops = {layer.name: (layer.op, layer.args) for layer in graph.layers}
    assert ops == {"bn": ("bn", {"eps": 0.001, "affine": False}), "scale": ("scale", {}),
                   "leaky": ("leaky_relu", {"slope": 0.1}), "sig": ("sigmoid", {}), "tanh": ("tanh", {}),
                   "gap": ("avgpool", {"kernel": ops["gap"][1]["kernel"]}), "flat": ("flatten", {}),
                   "ip": ("linear", {"out": 3, "bias": False}), "drop": ("dropout", {"p": 0.25}),
                   "prob": ("softmax", {})}  # no `ip_flatten`: the input is flat already
    assert str(ops["gap"][1]["kernel"]) == "global"
    assert [layer.path for layer in graph.layers if layer.holds_weights] == ["bn", "scale", "ip"]
    # scale: 8 factors; ip: 3*8 weights
    net = network(graph)
    assert net.params == 8 + 24 and out_shape(net) == (3,)


def test_merges_and_split(tmp_path):
    conv = "convolution_param { num_output: 8 kernel_size: 1 }"
    text = HEAD + (
        layer("split", "Split", "data", "a").replace('top: "a"', 'top: "a" top: "b"')
        + layer("ca", "Convolution", "a", "ca", conv) + layer("cb", "Convolution", "b", "cb", conv)
        + layer("prod", "Eltwise", ["ca", "cb"], "p", "eltwise_param { operation: PROD }")
        + layer("sum", "Eltwise", ["p", "ca"], "q", "eltwise_param { operation: SUM coeff: 1 coeff: 1 }")
        + layer("cat", "Concat", ["q", "cb"], "cat", "concat_param { axis: 1 }"))
    graph = load_text(tmp_path, text)
    ops = {layer.name: (layer.op, layer.inputs) for layer in graph.layers}
    assert ops == {"ca": ("conv", (INPUT,)), "cb": ("conv", (INPUT,)),  # a Split is no layer
                   "prod": ("mul", ("ca", "cb")), "sum": ("add", ("prod", "ca")), "cat": ("concat", ("sum", "cb"))}
    assert graph.layer("cat").shape == (16, 9, 9) and graph.output == "cat"


def test_input_forms_and_override(tmp_path):
    conv = layer("c", "Convolution", "data", "c", "convolution_param { num_output: 4 kernel_size: 3 }")
    by_dims = 'input: "data"\ninput_dim: 1\ninput_dim: 2\ninput_dim: 10\ninput_dim: 12\n' + conv
    assert load_text(tmp_path, by_dims).layers[0].shape == (4, 8, 10)
    by_layer = ('layer { name: "in" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 dim: 6 dim: 6 } } }\n'
                + conv)
    assert load_text(tmp_path, by_layer).input_shape == (2, 6, 6)
    graph = load_text(tmp_path, by_layer, input_shape=(2, 20, 20))  # --input wins over the file
    assert graph.input_shape == (2, 20, 20) and graph.layers[0].shape == (4, 18, 18)
    assert load_text(tmp_path, conv, input_shape=(2, 5, 5)).input_shape == (2, 5, 5)  # no input in the file
    assert load_text(tmp_path, 'name: "Tiny Net"\n' + by_dims).name == "Tiny_Net"


def test_rectangular_windows_and_floor_rounding(tmp_path):
    text = HEAD + layer("c", "Convolution", "data", "c",
                        "convolution_param { num_output: 4 kernel_h: 3 kernel_w: 1 pad_h: 1 pad_w: 0 stride: 2 "
                        "dilation: 1 group: 4 }") \
        + layer("p", "Pooling", "c", "p", "pooling_param { pool: MAX kernel_size: 2 stride: 2 round_mode: FLOOR }")
    graph = load_text(tmp_path, text.replace("dim: 8", "dim: 4"))
    c = graph.layer("c")
    assert c.args["kernel"] == (3, 1) and c.args["pad"] == (1, 0) and c.args["groups"] == 4
    # (9 + 2 - 3) / 2 + 1 = 5 by (9 - 1) / 2 + 1 = 5; then floor((5 - 2) / 2) + 1 = 2
    assert c.shape == (4, 5, 5) and graph.layer("p").shape == (4, 2, 2) and not graph.layer("p").args["ceil"]
    assert out_shape(network(graph)) == (4, 2, 2)


# ---- numerics: Caffe's forward rules against the compiled module ------------------------------------------


def caffe_lrn(x, size, alpha, beta, k):
    """Caffe's LRN across channels (lrn_layer.cpp): scale = k + alpha / size * sum of squares over
    `size` channels centred on each one (zero outside); top = x * scale^-beta."""
    c = x.shape[0]
    half = (size - 1) // 2
    out = np.empty_like(x)
    for i in range(c):
        window = x[max(0, i - half):min(c, i + half + 1)]
        out[i] = x[i] * (k + alpha / size * (window ** 2).sum(0)) ** -beta
    return out


def caffe_pooling(x, kernel, stride, pad, method):
    """Caffe's pooling forward (pooling_layer.cpp): windows clipped to the input (MAX) or to the padded
    input for the divisor (AVE), output size rounded up."""
    c, h, w = x.shape
    oh, ow = caffe_pool(h, kernel, stride, pad), caffe_pool(w, kernel, stride, pad)
    out = np.empty((c, oh, ow), x.dtype)
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * stride - pad, j * stride - pad
            he, we = min(hs + kernel, h + pad), min(ws + kernel, w + pad)
            area = (he - hs) * (we - ws)
            hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
            window = x[:, hs:he, ws:we]
            out[:, i, j] = window.max((1, 2)) if method == "MAX" else window.sum((1, 2)) / area
    return out


def test_lrn_and_ceil_pooling_compute_what_caffe_computes(tmp_path):
    torch = pytest.importorskip("torch")
    text = ('input: "data"\ninput_shape { dim: 1 dim: 6 dim: 8 dim: 8 }\n'
            + layer("n", "LRN", "data", "n", "lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 k: 2 }")
            + layer("m", "Pooling", "n", "m", "pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 }")
            + layer("a", "Pooling", "m", "a", "pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 }"))
    graph = load_text(tmp_path, text)
    # 8 -> ceil((8 + 2 - 3) / 2) + 1 = 5 -> ceil((5 + 2 - 3) / 2) + 1 = 3 (the last window starts at 3 < 5 + 1)
    assert graph.layer("a").shape == (6, 3, 3)
    module = network(graph).to_torch().eval()
    x = np.random.default_rng(0).standard_normal((6, 8, 8)).astype(np.float32) * 3
    expected = caffe_pooling(caffe_pooling(caffe_lrn(x, 3, 0.5, 0.75, 2.0), 3, 2, 1, "MAX"), 3, 2, 1, "AVE")
    with torch.no_grad():
        got = module(torch.from_numpy(x)[None])[0].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fixture, keys", [
    ("alexnet.prototxt", {"conv1.weight", "conv2.bias", "fc8.weight"}),
    ("resnet_stage.prototxt", {"conv1.weight", "bn_conv1.running_var", "bn2a_branch1.bias", "fc1000.weight"}),
])
def test_compiles_and_runs(fixture, keys):
    torch = pytest.importorskip("torch")
    graph = caffe.load(DATA / fixture)
    module = network(graph).to_torch().eval()
    state = module.state_dict()
    assert keys <= set(state)  # the layer names, sanitized, are the state_dict's modules
    holders = {layer.path for layer in graph.layers if layer.holds_weights}
    assert {k.rsplit(".", 1)[0] for k in state} == holders
    with torch.no_grad():
        out = module(torch.randn(1, *graph.input_shape))
    assert out.shape == (1, 1000) and torch.allclose(out.sum(), torch.tensor(1.0), atol=1e-4)  # softmax


# ---- malformed files: located errors with a help, never a traceback --------------------------------------

CONV = layer("conv1", "Convolution", "data", "conv1", "convolution_param { num_output: 8 kernel_size: 3 }")


def test_truncated_file(tmp_path):
    text = HEAD + CONV + 'layer {\n  name: "relu1"\n  type: "ReLU"\n  bottom: "conv1"\n'
    shown, path = failure(tmp_path, text)
    assert shown.startswith(f"{path}:5:7: error: the file ends before this `{{` is closed")
    assert "truncated" in shown


def test_syntax_error(tmp_path):
    shown, path = failure(tmp_path, HEAD + CONV.replace("num_output: 8", "num_output 8"))
    assert shown.startswith(f"{path}:4:") and "unexpected `8`" in shown
    shown, path = failure(tmp_path, HEAD + CONV + "}\n")
    assert shown.startswith(f"{path}:5:1: error: unexpected `}}`")


def test_unknown_layer_type(tmp_path):
    text = HEAD + CONV + layer("up", "Deconvolution", "conv1", "up")
    shown, path = failure(tmp_path, text)
    assert shown.startswith(f"{path}:5:") and "layer `up` has type `Deconvolution`, which is not supported" in shown
    assert "help: supported: Input, Convolution, Pooling, LRN" in shown


def test_missing_bottom(tmp_path):
    shown, path = failure(tmp_path, HEAD + CONV + layer("relu1", "ReLU", "conv_1", "conv1"))
    assert shown.startswith(f"{path}:5:") and "reads `conv_1`, which no layer before it writes" in shown
    assert "did you mean `conv1`?" in shown


def test_inconsistent_shapes(tmp_path):
    branch = layer("c2", "Convolution", "data", "c2", "convolution_param { num_output: 4 kernel_size: 3 }")
    shown, path = failure(tmp_path, HEAD + CONV + branch + layer("sum", "Eltwise", ["conv1", "c2"], "sum"))
    assert shown.startswith(f"{path}:6:1:") and "8x7x7, 4x7x7" in shown and "help:" in shown
    small = layer("c3", "Convolution", "data", "c3", "convolution_param { num_output: 4 kernel_size: 5 }")
    shown, path = failure(tmp_path, HEAD + CONV + small + layer("cat", "Concat", ["conv1", "c3"], "cat"))
    assert shown.startswith(f"{path}:6:1:") and "different sizes: 8x7x7, 4x5x5" in shown


@pytest.mark.parametrize("change, message", [
    ("num_output: 0", "`num_output: 0` is out of range"),
    ("num_output: 100000000", "`num_output: 100000000` is out of range"),
    ("num_output: 8 kernel_size: 30", "computes an empty output (8x-20x-20)"),
    ("num_output: 8 group: 3", "`group: 3` must divide its 8 input channels and its 8 outputs"),
    ("num_output: 8 stride: 0", "`stride: 0` is out of range"),
    ("num_output: 8.5", "`num_output` must be a whole number, got 8.5"),
])
def test_bad_sizes(tmp_path, change, message):
    text = HEAD + CONV.replace("num_output: 8 kernel_size: 3", change if "kernel_size" in change else
                               change + " kernel_size: 3")
    shown, path = failure(tmp_path, text)
    assert shown.startswith(f"{path}:4:") and message in shown, shown


def test_absurd_input_and_unsupported_fields(tmp_path):
    shown, path = failure(tmp_path, HEAD.replace("dim: 9 dim: 9", "dim: 900000 dim: 9") + CONV)
    assert shown.startswith(f"{path}:3:") and "out of range" in shown
    shown, _ = failure(tmp_path, HEAD + CONV.replace("kernel_size: 3", "kernel_size: 3 weird: 1"))
    assert "`convolution_param` field `weird` is not supported" in shown
    shown, _ = failure(tmp_path, HEAD + CONV + layer("m", "Eltwise", ["conv1", "conv1"], "m",
                                                     "eltwise_param { operation: MAX }"))
    assert "MAX is not supported" in shown and "help: supported: SUM (add), PROD (mul)" in shown
    shown, _ = failure(tmp_path, HEAD + CONV + layer("d", "Eltwise", ["conv1", "conv1"], "d",
                                                     "eltwise_param { coeff: 1 coeff: -1 }"))
    assert "coefficient -1 is not supported" in shown
    shown, _ = failure(tmp_path, HEAD + CONV + layer("s", "Scale", "conv1", "s", "scale_param { bias_term: true }"))
    assert "does not follow a BatchNorm" in shown


def test_pooling_pytorch_cannot_express(tmp_path):
    # kernel 1, stride 3, no padding on 9: Caffe ceil((9 - 1) / 3) + 1 = 4, its last window starting at
    # 9, outside the input; PyTorch drops that window (3)
    shown, path = failure(tmp_path, HEAD + layer("p", "Pooling", "data", "p",
                                                 "pooling_param { pool: MAX kernel_size: 1 stride: 3 }"))
    assert shown.startswith(f"{path}:4:1:") and "Caffe computes an output of 8x4x4" in shown
    # padding 2 of a 3 window: Caffe allows it, PyTorch pools with at most kernel // 2
    shown, _ = failure(tmp_path, HEAD + layer("p", "Pooling", "data", "p",
                                              "pooling_param { pool: MAX kernel_size: 3 pad: 2 }"))
    assert "more than half the kernel" in shown


def test_training_layer_read_by_a_kept_one(tmp_path):
    text = HEAD + 'layer { name: "d" type: "Data" top: "x" top: "label" }\n' + \
        layer("c", "Convolution", "label", "c", "convolution_param { num_output: 2 kernel_size: 1 }")
    shown, _ = failure(tmp_path, text, input_shape=(3, 4, 4))
    assert "written by `d`, which is left out" in shown


def test_no_input(tmp_path):
    shown, path = failure(tmp_path, CONV.replace('bottom: "data"', 'bottom: "x"'))
    assert "reads `x`, which no layer before it writes" in shown


def test_cli_reports_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.prototxt"
    bad.write_text(HEAD + CONV + layer("up", "Deconvolution", "conv1", "up"))
    out = tmp_path / "bad.cnn"
    run = subprocess.run([sys.executable, "-m", "graphdsl.cli", "import", str(bad), "-o", str(out)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert f"{bad}:5:" in run.stderr and "Deconvolution" in run.stderr and not out.exists()


# ---- a property: random chains of conv / pool / relu against a direct computation -------------------------


@st.composite
def chains(draw):
    c, size = draw(st.integers(1, 4)), draw(st.integers(8, 24))
    text = f'input: "data"\ninput_shape {{ dim: 1 dim: {c} dim: {size} dim: {size} }}\n'
    params = macs = 0
    bottom = "data"
    for i in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["conv", "pool", "relu"]))
        top = f"l{i}"
        if kind == "conv":
            k = draw(st.integers(1, min(5, size)))
            s, p = draw(st.integers(1, 3)), draw(st.integers(0, 2))
            g = draw(st.sampled_from([d for d in (1, 2) if c % d == 0]))
            out = g * draw(st.integers(1, 4))
            bias = draw(st.booleans())
            size = caffe_conv(size, k, s, p)
            params += out * (c // g) * k * k + (out if bias else 0)
            macs += out * size * size * (c // g) * k * k
            c = out
            text += layer(f"conv{i}", "Convolution", bottom, top,
                          f"convolution_param {{ num_output: {out} kernel_size: {k} stride: {s} pad: {p} "
                          f"group: {g} bias_term: {'true' if bias else 'false'} }}")
        elif kind == "pool":
            k = draw(st.integers(2, min(3, size)))
            s, p = draw(st.integers(1, 2)), draw(st.integers(0, k // 2))
            size = caffe_pool(size, k, s, p)
            method = draw(st.sampled_from(["MAX", "AVE"]))
            text += layer(f"pool{i}", "Pooling", bottom, top,
                          f"pooling_param {{ pool: {method} kernel_size: {k} stride: {s} pad: {p} }}")
        else:
            top = bottom  # in place
            text += layer(f"relu{i}", "ReLU", bottom, top)
        bottom = top
    return text, params, macs, (c, size, size)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chains())
def test_random_chains(tmp_path, chain):
    text, params, macs, shape = chain
    path = tmp_path / "chain.prototxt"
    path.write_text(text)
    net = network(caffe.load(path))
    assert (net.params, net.macs, out_shape(net)) == (params, macs, shape)


def test_cli_imports_alexnet(tmp_path):
    out = tmp_path / "alexnet.cnn"
    run = subprocess.run([sys.executable, "-m", "graphdsl.cli", "import", str(DATA / "alexnet.prototxt"), "-o",
                          str(out)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "60,965,224" in run.stdout and "724,406,816" in run.stdout
    net = graphdsl.load(str(out))
    assert (net.params, net.macs, out_shape(net)) == (60_965_224, 724_406_816, (1000,))


def test_phases_and_names(tmp_path):
    conv = "convolution_param { num_output: 2 kernel_size: 1 }"
    text = HEAD + (
        layer("a/b", "Convolution", "data", "x", conv) + layer("a_b", "Convolution", "x", "y", conv)
        + layer("train_only", "Dropout", "y", "y", "phase: TRAIN")
        + layer("not_in_test", "Dropout", "y", "y", "exclude { phase: TEST }")
        + layer("test_only", "ReLU", "y", "y", "include { phase: TEST }")
        + layer("3x3", "Convolution", "y", "z", conv) + layer("input", "Convolution", "z", "w", conv))
    warnings: list[str] = []
    graph = load_text(tmp_path, text, warnings=warnings)
    assert [layer.name for layer in graph.layers] == ["a_b", "a_b_2", "test_only", "l_3x3", "input_"]
    assert [layer.path for layer in graph.layers if layer.holds_weights] == ["a_b", "a_b_2", "l_3x3", "input_"]
    assert len(warnings) == 2 and "`train_only`" in warnings[0] and "`not_in_test`" in warnings[1]
    assert network(graph).params == (2 * 8 + 2) + 3 * (2 * 2 + 2)  # 8 -> 2 channels, then three 2 -> 2


@pytest.mark.parametrize("text, message", [
    ('name: "a\\qb"', "unknown escape `\\q` in a string"),
    ('name: "ab', "a string that does not end on its line"),
    ("a: 1" + " b {" * 40 + "}" * 40, "messages nested more than 32 deep"),
    ("a: " + "9" * 80, "a number of 80 characters"),
    ("layer { name: 'x' type: 7 }", "`type` must be a string, got 7"),
    ("layer [1, 2]", "unexpected `[`"),
])
def test_text_format_errors(tmp_path, text, message):
    shown, path = failure(tmp_path, text)
    assert shown.startswith(f"{path}:1:") and message in shown, shown


def test_text_format_values():
    from graphdsl.importers import prototxt

    root = prototxt.parse("a: 'x\\n\\101' \"y\" b: -1.5e-3 c: 0x1F d: [1, 2] e < f: -inf > g: 3f ; h: MAX,", "t")
    values = {f.name: f.value for f in root.fields if f.name != "d"}
    assert values["a"] == "x\nAy" and values["b"] == -1.5e-3 and values["c"] == 31 and values["g"] == 3.0
    assert [f.value for f in root.all("d")] == [1, 2] and values["e"].fields[0].value == -math.inf
    assert isinstance(values["h"], prototxt.Ident) and root.first("b").col == 18


def test_batchnorm_scale_not_in_place(tmp_path):
    body = (layer("bn", "BatchNorm", "data", "normed") + layer("sc", "Scale", "normed", "scaled",
                                                                "scale_param { bias_term: true }"))
    graph = load_text(tmp_path, HEAD + body)
    assert [(layer.name, layer.op, layer.args["affine"]) for layer in graph.layers] == [("bn", "bn", True)]
    assert network(graph).params == 2 * 8  # the Scale's factor and shift per channel
    shown, path = failure(tmp_path, HEAD + body + layer("r", "ReLU", "normed", "r"))
    assert shown.startswith(f"{path}:6:") and "before the Scale `sc` that follows it" in shown


def test_several_outputs(tmp_path):
    conv = "convolution_param { num_output: 2 kernel_size: 1 }"
    text = HEAD + layer("trunk", "Convolution", "data", "t", conv) + layer("head1", "Convolution", "t", "h1", conv) \
        + layer("head2", "Convolution", "t", "h2", conv) + layer("relu", "ReLU", "h2", "h2")
    graph = load_text(tmp_path, text)
    assert graph.outputs == ("head1", "relu") and graph.output == "relu"  # the blobs no layer reads, in order


# ---- bytes, long diagnostics, blobs written twice --------------------------------------------------------


def test_bytes_that_are_not_utf8_in_comments_and_strings(tmp_path):
    """Caffe reads bytes: a file saved in GBK or Latin-1 imports when its odd bytes are in comments (or
    names); elsewhere they are a located error whose caret stands on the byte."""
    path = tmp_path / "gbk.prototxt"
    text = (HEAD + CONV).encode()
    path.write_bytes(b"# \xc4\xe3\xba\xc3 (GBK)\n" + text.replace(b'name: "conv1"', b'name: "conv1\xe9"')
                     + b'layer { name: "r" type: "ReLU" bottom: "conv1" top: "conv1" }  # caf\xe9\n')
    graph = caffe.load(path)
    assert [layer.op for layer in graph.layers] == ["conv", "relu"]
    assert graph.layers[0].name == "conv1_xe9"  # the name's byte as `\xe9`, sanitized
    path.write_bytes(b"# \xc4\xe3\n" + text.replace(b"num_output: 8", b"num_output:\xa08"))
    with pytest.raises(ImportFailure) as info:
        caffe.load(path)
    diagnostic, sources = info.value.diagnostic()
    shown = diagnostic.render(sources)
    column = text.split(b"\n")[3].index(b"num_output:") + len("num_output:") + 1
    assert shown.startswith(f"{path}:5:{column}: error: byte 0xA0 is not UTF-8 text"), shown
    assert "save the file as UTF-8" in diagnostic.help and "spec" not in diagnostic.help
    assert "\ufffd" in sources[str(path)] and "\udca0" not in shown  # printable: U+FFFD stands for the byte


def test_thousands_of_unclosed_messages_are_one_short_line(tmp_path):
    shown, path = failure(tmp_path, HEAD + "layer { " * 10_000)
    first = shown.splitlines()[0]
    column = 8 * 9_999 + len("layer ") + 1  # the last `{`
    assert first == (f"{path}:4:{column}: error: the file ends before this `{{` is closed (inside the messages "
                     "opened on line 4, line 4, line 4 and 9,996 more)"), first
    assert len(shown) < 2000
    shown, _ = failure(tmp_path, HEAD + "layer {\n a {\n")
    assert "(inside the message opened on line 4)" in shown


@pytest.mark.parametrize("second, where, first", [
    (layer("conv2", "Convolution", "data", "conv1", "convolution_param { num_output: 4 kernel_size: 1 }"),
     5, "layer `conv1` (line 4)"),
    (layer("relu", "ReLU", "conv1", "data"), 5, "the network's input"),
    (layer("sum", "Eltwise", ["data", "conv1"], "conv1"), 5, "layer `conv1` (line 4)"),  # in place in position 2
])
def test_a_blob_written_by_two_layers(tmp_path, second, where, first):
    """Caffe refuses a top "produced by multiple sources" (not in place): so does the import, at the
    second layer's top, rather than leave the first layer a dead branch."""
    shown, path = failure(tmp_path, HEAD + CONV.replace("kernel_size: 3", "kernel_size: 1") + second)
    top = second.split("\n")[0]
    assert shown.startswith(f"{path}:{where}:{top.index('top:') + 1}: error: "), shown
    assert f"which {first} writes already" in shown and "in place" in shown


def test_in_place_and_phase_filtered_layers_write_a_blob_again(tmp_path):
    conv = CONV.replace("kernel_size: 3", "kernel_size: 1")
    text = HEAD + (layer("data_train", "Data", [], "data", "include { phase: TRAIN }") + conv
                   + layer("relu", "ReLU", "conv1", "conv1")  # in place
                   + layer("sum", "Eltwise", ["conv1", "data"], "conv1")  # in place: the bottom in position 1
                   + layer("drop", "Dropout", "conv1", "out", "include { phase: TRAIN }")
                   + layer("scale", "Scale", "conv1", "out"))  # `out` of a layer Caffe's TEST net has not
    graph = load_text(tmp_path, text.replace(' bottom: ""', ""))
    assert [layer.op for layer in graph.layers] == ["conv", "relu", "add", "scale"]

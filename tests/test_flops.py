"""FLOPs and MACs under every convention (graphdsl.flops): the published ResNet-50 figures, ResNet v1 against
v1.5, the seed's Inception modules, every convention hand-counted on small specs (each op once), the
published tables of ptflops, thop, torchinfo and mmengine, a golden `--explain` report, the summary's
`convention=`, and the conv + linear FLOPs checked against torch's FlopCounterMode on the compiled modules.

Golden files live in tests/golden/; GRAPHDSL_REGEN=1 rewrites them for review as a diff.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import golden_files
import pytest

import graphdsl
from graphdsl import flops
from graphdsl.backends.summary import Summary

HERE = Path(__file__).resolve().parent
SPECS = HERE.parent / "specs"
GOLDEN = HERE / "golden"


def spec(name: str, **overrides) -> graphdsl.Network:
    return graphdsl.load(SPECS / f"{name}.cnn", **overrides)


# ---- ResNet-50: one network, every figure the tools publish --------------------------------------------

RESNET50 = {
    "macs": 4_089_184_256,  # torchvision's `_ops` 4.089, the "4.09 G" of papers and tables
    "macs-all": 4_117_333_992,  # + 28,149,736 other ops: BN 11.1M, ReLU 9.6M, adds 5.5M, max pool 1.8M, ...
    "flops": 8_178_368_512,  # FlopCounterMode
    "flops-all": 8_206_518_248,
    "ptflops": 4_121_925_096,  # ptflops' README: 4.12 GMac
    "ptflops-aten": 4_089_185_256,  # + the fc bias
    "thop": 4_133_742_592,  # thop 0.1.1
    "thop-readme": 4_135_789_592,  # thop's README: 4.14
    "fvcore": 4_111_512_576,  # eval mode
    "fvcore-train": 4_144_854_528,  # mmengine's documented ResNet-50: 4.145G
    "torchinfo": 4_089_238_376,  # torchinfo's README: "Total mult-adds (G): 4.09"
}


def test_resnet50_under_every_convention():
    g = spec("resnet50").graph
    assert flops.costs(g, "macs").total == 4_089_184_256  # the published conv + linear figure, exactly
    assert flops.totals(g) == RESNET50
    assert list(flops.CONVENTIONS) == list(RESNET50)


def test_resnet50_differences_are_the_explained_lines():
    """ptflops - macs is the fc bias, 2 per BN value, the ReLUs and the pooling inputs: nothing else."""
    e = flops.explain(spec("resnet50").graph)
    lines = {ln.kind: ln for ln in e.lines}
    bn, relu = lines["bn"].values, lines["relu"].values
    assert (bn, relu) == (11_113_984, 9_608_704)
    assert RESNET50["ptflops"] - RESNET50["macs"] == 1000 + 2 * bn + relu + 64 * 112 * 112 + 2048 * 7 * 7
    assert RESNET50["thop"] - RESNET50["macs"] == 4 * bn + (49 + 1) * 2048
    assert RESNET50["fvcore"] - RESNET50["macs"] == 2 * bn + 2048 * 7 * 7
    assert RESNET50["fvcore-train"] - RESNET50["fvcore"] == 3 * bn
    for name in flops.CONVENTIONS:  # the lines add up to the totals
        assert sum(ln.figures[name] for ln in e.lines) == e.totals[name] == RESNET50[name]


RESNET50_V1 = """
block bottleneck_v1(planes, stride = 1) {
    \"\"\"The paper's (and Caffe's) bottleneck: the stride on the first 1x1 conv.\"\"\"
    residual {
        conv1: conv(planes, 1, stride=stride, bias=false)
        bn1: bn
        relu(inplace=true)
        conv2: conv(planes, 3, pad=1, bias=false)
        bn2: bn
        relu(inplace=true)
        conv3: conv(planes * 4, 1, bias=false)
        bn3: bn
    } shortcut if stride != 1 or in.channels != planes * 4 {
        downsample: [conv(planes * 4, 1, stride=stride, bias=false), bn]
    }
    relu(inplace=true)
}

block stage(planes, n, stride) {
    bottleneck_v1(planes, stride=stride)
    bottleneck_v1(planes) * (n - 1)
}

network resnet50_v1 {
    input 3x224x224
    conv1: conv(64, 7, stride=2, pad=3, bias=false)
    bn1: bn
    relu: relu(inplace=true)
    maxpool: maxpool(3, stride=2, pad=1)
    layer1: stage(64, 3, 1)
    layer2: stage(128, 4, 2)
    layer3: stage(256, 6, 2)
    layer4: stage(512, 3, 2)
    avgpool: avgpool(adaptive=1)
    flatten
    fc: linear(1000)
}
"""


def test_resnet_v1_against_v15():
    """The paper's "3.8 x 10^9 FLOPs" is ResNet v1 (stride on the first 1x1); torchvision's v1.5 puts it on the
    3x3, which then runs at the higher resolution: same parameters and layers, 231,211,008 more MACs."""
    v1, v15 = graphdsl.load(text=RESNET50_V1), spec("resnet50")
    assert set(v1.graph) == set(v15.graph) and v1.params == v15.params == 25_557_032
    m1, m15 = flops.totals(v1.graph)["macs"], flops.totals(v15.graph)["macs"]
    assert (m1, m15, m15 - m1) == (3_857_973_248, 4_089_184_256, 231_211_008)
    assert f"{m1 / 1e9:.1f}" == "3.9" and m1 // 10**8 == 38  # 3.86 G, written "3.8 x 10^9" in the paper
    # all of it is conv1 of the first block of stages 2-4, run at the input's 4x the positions:
    # (H_in^2 - H_out^2) * C_in * planes = 3 * H_out^2 * C_in * planes, 77,070,336 in each stage
    per = {n: d["macs"] for n, d in v15.graph.nodes(data=True)}
    per1 = {n: d["macs"] for n, d in v1.graph.nodes(data=True)}
    assert {n for n in per if per[n] != per1[n]} == {"layer2.0.conv1", "layer3.0.conv1", "layer4.0.conv1"}
    assert m15 - m1 == sum(3 * h * h * c * (c // 2) for h, c in ((28, 256), (14, 512), (7, 1024)))


def test_inception_naive_against_bottleneck():
    """The seed's figures: 854M against 271M MACs; twice that in FLOPs."""
    naive = flops.totals(graphdsl.load(SPECS / "examples" / "inception_naive.cnn").graph)
    bottleneck = flops.totals(graphdsl.load(SPECS / "examples" / "inception_bottleneck.cnn").graph)
    assert (naive["macs"], bottleneck["macs"]) == (854_196_224, 271_351_808)
    assert (naive["flops"], bottleneck["flops"]) == (1_708_392_448, 542_703_616)
    assert naive["macs"] / bottleneck["macs"] == pytest.approx(3.15, abs=0.01)
    for name in ("macs-all", "ptflops", "fvcore"):  # every convention keeps the bottleneck about 3x cheaper
        assert 2.9 < naive[name] / bottleneck[name] < 3.3


# ---- every convention, every op, counted by hand --------------------------------------------------------

HAND = """
network hand {
    input 3x4x4
    ca: channel_affine(scale=[1, 2, 3], shift=[0, 0, 0])
    c1: conv(4, 3, pad=1)
    b1: bn
    r1: relu
    c2: conv(4, 3, pad=1, groups=4, bias=false)
    b2: bn(affine=false)
    r2: relu6
    n1: lrn(3)
    m1: maxpool(2)
    a1: avgpool(3, stride=1, pad=1)
    x: leaky_relu
    pool: avgpool(adaptive=1)
    fc1: conv(4, 1)
    gate: hardsigmoid
    scaled: mul(gate, x)
    s: add(scaled, x)
    cat: concat(s, x)
    e1: elu  e2: gelu  e3: silu  e4: sigmoid  e5: tanh  e6: hardswish
    sm: softmax
    up: upsample(scale=2)
    upb: upsample(scale=2, mode="bilinear")
    ln: layer_norm
    sh: channel_shuffle(2)
    d: dropout(0.5)
    ap: avgpool(adaptive=3)
    to_last: permute([0, 2, 3, 1])
    ln2: layer_norm
    lin1: linear(16)
    ls: scale
    back: permute([0, 3, 1, 2])
    fl: flatten
    fc: linear(10)
    fc2: linear(5, bias=false)
}
"""

COLUMNS = ("macs", "macs-all", "flops", "flops-all", "ptflops", "ptflops-aten", "thop", "thop-readme", "fvcore",
           "fvcore-train", "torchinfo")
# Per layer, in COLUMNS order. Shapes: 3x4x4 in; 4x4x4 (64 values) to n1; 4x2x2 (16) from m1; 4x1x1 for the
# gate; 8x2x2 (32) from cat; 8x4x4 (128) after up, 8x8x8 (512) after upb; 8x3x3 (72) from ap; 3x3x16 (144)
# from lin1.
HAND_EXPECTED = {
    #          macs  macs-all flops flops-all ptflops aten  thop  readme fvcore train torchinfo
    "ca":     (0,    96,      0,    96,       0,      0,    0,    0,     0,     0,    0),  # x*s+b: 2 per value, 48
    "c1":     (1728, 1792,    3456, 3520,     1792,   1792, 1728, 1792,  1728,  1728, 1792),  # 64 * 27, bias 64
    "b1":     (0,    64,      0,    64,       128,    0,    256,  256,   128,   320,  8),  # 2/4/2/5 a value; 2C
    "r1":     (0,    64,      0,    64,       64,     0,    0,    0,     0,     0,    0),
    "c2":     (576,  576,     1152, 1152,     576,    576,  576,  576,   576,   576,  576),  # depthwise: 64 * 9
    "b2":     (0,    64,      0,    64,       64,     0,    128,  128,   64,    256,  0),  # no affine: 1/2/1/4
    "r2":     (0,    64,      0,    64,       64,     0,    0,    0,     0,     0,    0),
    "n1":     (0,    192,     0,    192,      0,      0,    0,    0,     0,     0,    0),  # 3 channels a value
    "m1":     (0,    64,      0,    64,       64,     0,    0,    0,     0,     0,    0),  # 16 x 2x2; ptflops: input
    "a1":     (0,    144,     0,    144,      16,     0,    16,   160,   0,     0,    0),  # 16 x 3x3; thop (9+1)
    "x":      (0,    16,      0,    16,       16,     0,    0,    0,     0,     0,    0),
    "pool":   (0,    16,      0,    16,       16,     0,    20,   20,    16,    16,   0),  # 4 x (2*2 + 1)
    "fc1":    (16,   20,      32,   36,       20,     20,   16,   20,    16,    16,   20),  # 4 x 4, bias 4
    "gate":   (0,    4,       0,    4,        0,      0,    0,    0,     0,     0,    0),
    "scaled": (0,    16,      0,    16,       0,      0,    0,    0,     0,     0,    0),
    "s":      (0,    16,      0,    16,       0,      0,    0,    0,     0,     0,    0),
    "cat":    (0,    0,       0,    0,        0,      0,    0,    0,     0,     0,    0),
    "e1":     (0,    32,      0,    32,       32,     0,    0,    0,     0,     0,    0),  # ELU and GELU: ptflops
    "e2":     (0,    32,      0,    32,       32,     0,    0,    0,     0,     0,    0),
    "e3":     (0,    32,      0,    32,       0,      0,    0,    0,     0,     0,    0),
    "e4":     (0,    32,      0,    32,       0,      0,    0,    0,     0,     0,    0),
    "e5":     (0,    32,      0,    32,       0,      0,    0,    0,     0,     0,    0),
    "e6":     (0,    32,      0,    32,       0,      0,    0,    0,     0,     0,    0),
    "sm":     (0,    96,      0,    96,       0,      0,    92,   92,    0,     0,    0),  # 4 positions x (3*8 - 1)
    "up":     (0,    128,     0,    128,      128,    0,    128,  128,   128,   128,  0),
    "upb":    (0,    2048,    0,    2048,     512,    0,    5632, 5632,  2048,  2048, 0),  # 512 x 4 / 11 / 4
    "ln":     (0,    1024,    0,    1024,     0,      0,    0,    0,     2560,  2560, 16),  # C x H x W: LayerNorm2d
    "sh":     (0,    512,     0,    512,      0,      0,    0,    0,     0,     0,    0),
    "d":      (0,    0,       0,    0,        0,      0,    0,    0,     0,     0,    0),
    "ap":     (0,    512,     0,    512,      512,    0,    584,  360,   512,   512,  0),  # 72 x (64/9 + 1); 5
    "to_last": (0,   0,       0,    0,        0,      0,    0,    0,     0,     0,    0),
    "ln2":    (0,    144,     0,    144,      72,     0,    288,  0,     360,   360,  16),  # nn.LayerNorm on 72
    "lin1":   (1152, 1296,    2304, 2448,     1296,   1296, 1152, 2160,  1152,  1152, 144),  # 9 x 8 x 16; 15 x 144
    "ls":     (0,    144,     0,    144,      0,      0,    0,    0,     0,     0,    0),
    "back":   (0,    0,       0,    0,        0,      0,    0,    0,     0,     0,    0),
    "fl":     (0,    0,       0,    0,        0,      0,    0,    0,     0,     0,    0),
    "fc":     (1440, 1450,    2880, 2890,     1450,   1450, 1440, 2870,  1440,  1440, 1450),  # 144 x 10; 287 x 10
    "fc2":    (50,   50,      100,  100,      50,     50,   50,   95,    50,    50,   50),  # 10 x 5; 19 x 5
}


def test_every_convention_counted_by_hand():
    g = graphdsl.load(text=HAND).graph
    assert sorted(n for n in g if n != "input") == sorted(HAND_EXPECTED)
    for i, name in enumerate(COLUMNS):
        got = flops.costs(g, name)
        expected = {n: row[i] for n, row in HAND_EXPECTED.items()}
        assert {n: got.per_node[n] for n in expected} == expected, name
        assert got.total == sum(expected.values())


def test_unknown_convention():
    g = graphdsl.load(text=HAND).graph
    with pytest.raises(ValueError, match="unknown convention 'gflops'; one of macs, macs-all"):
        flops.costs(g, "gflops")
    with pytest.raises(ValueError, match="unknown convention"):
        Summary(g, convention="gflops")


# ---- the tools' published tables -----------------------------------------------------------------------

# ptflops README, "torchvision" benchmark, MACs(G) at 224x224 (sovrasov/flops-counter.pytorch README.md)
PTFLOPS_README = dict(alexnet=0.72, vgg11=7.63, vgg13=11.34, vgg16=15.5, vgg19=19.67, vgg11_bn=7.64, vgg13_bn=11.36,
                      vgg16_bn=15.53, vgg19_bn=19.7, resnet18=1.82, resnet34=3.68, resnet50=4.12, resnet101=7.85,
                      resnet152=11.58, squeezenet1_0=0.83, squeezenet1_1=0.36, densenet121=2.88, densenet169=3.42,
                      densenet201=4.37, densenet161=7.82)
# thop README, "Results of Recent Models", MACs(G) (Lyken17/pytorch-OpCounter, ultralytics/thop README.md).
# Left out: mnasnet0_5 and mnasnet1_3 (torchvision has since changed their stems) and inception_v3 (its
# branch pools are F.avg_pool2d calls, which thop's module hooks never see).
THOP_README = dict(alexnet=0.77, vgg11=7.74, vgg11_bn=7.77, vgg13=11.44, vgg13_bn=11.49, vgg16=15.61, vgg16_bn=15.66,
                   vgg19=19.77, vgg19_bn=19.83, resnet18=1.82, resnet34=3.68, resnet50=4.14, resnet101=7.87,
                   resnet152=11.61, wide_resnet101_2=22.84, wide_resnet50_2=11.46, resnext50_32x4d=4.29,
                   resnext101_32x8d=16.54, densenet121=2.90, densenet161=7.85, densenet169=3.44, densenet201=4.39,
                   squeezenet1_0=0.82, squeezenet1_1=0.35, mnasnet0_75=0.24, mnasnet1_0=0.34, mobilenet_v2=0.33,
                   shufflenet_v2_x0_5=0.05, shufflenet_v2_x1_0=0.15, shufflenet_v2_x1_5=0.31, shufflenet_v2_x2_0=0.60)


@pytest.mark.parametrize("convention, table", [("ptflops", PTFLOPS_README), ("thop-readme", THOP_README)],
                         ids=["ptflops", "thop"])
def test_published_tables(convention, table):
    got = {m: round(flops.costs(spec(m).graph, convention).total / 1e9, 2) for m in table}
    assert got == table


def test_published_single_figures():
    g = spec("resnet50").graph
    t = flops.totals(g)
    assert f"{t['torchinfo'] / 1e9:.2f}" == "4.09"  # torchinfo README: Total mult-adds (G): 4.09
    assert f"{t['fvcore-train'] / 1e9:.3f}" == "4.145"  # mmengine docs, model_analysis: resnet 4.145G
    assert f"{t['macs'] / 1e9:.3f}" == "4.089"  # torchvision ResNet50_Weights meta "_ops": 4.089


# ---- reports ---------------------------------------------------------------------------------------------


def test_explain_report_golden():
    text = flops.report(spec("resnet50").graph, explained=True)
    golden_files.check_golden(GOLDEN / "flops_resnet50_explain.txt", text)


def test_docs_show_the_real_report():
    """docs/summary.md quotes the golden report's tables: each of their lines is there as printed."""
    doc = (HERE.parent / "docs" / "summary.md").read_text(encoding="utf-8")
    report = flops.report(spec("resnet50").graph, explained=True).splitlines()
    quoted = [ln for ln in report[2:] if ln.strip() and not ln.startswith(("As reported", "  ", "Per kind"))]
    assert len(quoted) > 20 and all(ln in doc for ln in quoted)


def test_report_formats():
    g = spec("resnet18").graph
    data = json.loads(flops.report(g, "json", ["macs", "flops"], explained=True))
    assert data["network"] == "resnet18" and data["input"] == [3, 224, 224]
    assert list(data["conventions"]) == ["macs", "flops"]
    assert data["conventions"]["flops"]["total"] == 2 * data["conventions"]["macs"]["total"] == 3_628_146_688
    assert data["explain"]["totals"] == {"macs": 1_814_073_344, "flops": 3_628_146_688}
    assert {k["kind"] for k in data["explain"]["kinds"]} >= {"conv", "bn", "relu", "add", "linear + bias"}
    md = flops.report(g, "markdown", explained=True)
    assert "| Convention | Total | ≈ | Counts |" in md and "| bn | 20 |" in md
    assert flops.report(g, "table") == flops.report(g, "text")
    with pytest.raises(ValueError, match="unknown format"):
        flops.report(g, "csv")


def test_short_units():
    assert [flops.short(n) for n in (0, 999, 1000, 9999, 10_000, 802_816, 22_227_968, 4_089_184_256)] == \
        ["0", "999", "1000", "9999", "10K", "802.8K", "22.23M", "4.089G"]


# ---- the summary under a convention --------------------------------------------------------------------


def test_summary_convention_column():
    g = spec("resnet18").graph
    plain, converted = Summary(g), Summary(g, convention="flops")
    assert "FLOPs" not in plain.table().split("\n")[2] and plain.headers == Summary.HEADERS
    header = converted.table().split("\n")[2]
    assert "FLOPs" in header and " MACs " not in header
    assert [r.cost for r in converted.rows] == [2 * r.macs for r in converted.rows]
    assert "FLOPs              3,628,146,688 (3.6G), 2 per conv + linear MAC" in converted.table()
    data = converted.to_json()
    assert data["convention"] == "flops" and data["rows"][0]["cost"] == 2 * data["rows"][0]["macs"]
    assert data["costs"] == flops.totals(g) and "cost" not in plain.to_json()["rows"][0]
    assert plain.to_json()["costs"]["macs"] == plain.totals["macs"]
    assert converted.csv().split("\n")[0].endswith(",inputs,flops")


def test_summary_convention_folds_blocks():
    g = spec("resnet50").graph
    s = Summary(g, depth=1, convention="ptflops")
    assert sum(r.cost for r in s.rows) == RESNET50["ptflops"]
    assert "ptflops MACs" in s.markdown().split("\n")[2]


def test_static_path_imports_no_torch():
    code = ("import sys, graphdsl; from graphdsl import flops; from graphdsl.backends.summary import Summary; "
            "g = graphdsl.load('specs/resnet50.cnn').graph; flops.report(g, explained=True); "
            "Summary(g, convention='thop').to_json(); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=HERE.parent, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- against torch's FlopCounterMode -------------------------------------------------------------------

# FlopCounterMode counts aten.convolution (2 * output values * C_in/groups * kh * kw, no bias) and aten.mm /
# addmm / bmm (2 * m * k * n, no bias) only: pooling (adaptive too), norms, activations and adds are free.
# Auxiliary heads run in training mode only, so GoogLeNet and Inception-v3 are checked without them.
QUICK = ["resnet18", "mobilenet_v2", "convnext_tiny", "shufflenet_v2_x0_5", "googlenet"]
SLOW = ["alexnet", "vgg11", "resnet50", "densenet121", "efficientnet_b0", "regnet_x_400mf", "inception_v3",
        "squeezenet1_0", "mobilenet_v3_small", "resnext50_32x4d", "regnet_y_400mf", "mnasnet0_5"]


def flop_counter(net: graphdsl.Network) -> tuple[int, dict[str, int]]:
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    module = net.to_torch().eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(torch.zeros(1, *net.input_shape))
    return counter.get_total_flops(), {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}


def check_flop_counter(name: str) -> None:
    net = spec(name, aux_logits=False) if name in ("googlenet", "inception_v3") else spec(name)
    total, by_op = flop_counter(net)
    assert total == flops.costs(net.graph, "flops").total == 2 * flops.costs(net.graph, "macs").total
    assert set(by_op) <= {"aten.convolution", "aten.addmm", "aten.mm"}


@pytest.mark.parametrize("name", QUICK)
def test_flop_counter_mode(name):
    check_flop_counter(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_flop_counter_mode_more(name):
    check_flop_counter(name)


def test_flop_counter_mode_on_every_op():
    """The hand spec's convs (grouped too), channels-last and flat linears: 2 x 4,962 MACs; nothing else."""
    net = graphdsl.load(text=HAND)
    total, by_op = flop_counter(net)
    assert total == 2 * (1728 + 576 + 16 + 1152 + 1440 + 50) == flops.costs(net.graph, "flops").total
    assert set(by_op) <= {"aten.convolution", "aten.addmm", "aten.mm"}


# ---- against the tools themselves, where installed ----------------------------------------------------

# What the tools count on torchvision's own models that the spec cannot know: torchvision computes these
# with functional calls or tensor methods, which module hooks (ptflops, thop) or fvcore's op table skip.
QUIRKS = {
    # DenseNet's final F.relu + F.adaptive_avg_pool2d; MobileNetV2's adaptive_avg_pool2d call
    ("densenet121", "ptflops"): 100_352, ("densenet121", "thop"): 51_200,
    ("mobilenet_v2", "ptflops"): 62_720, ("mobilenet_v2", "thop"): 64_000,
    # ShuffleNetV2 and MNASNet pool with x.mean([2, 3])
    **{("shufflenet_v2_x0_5", t): d for t, d in (("ptflops", 50_176), ("thop", 51_200), ("fvcore", 50_176),
                                                 ("fvcore-train", 50_176))},
    # GoogLeNet's BasicConv2d applies F.relu
    ("googlenet", "ptflops"): 3_226_160,
}
TOOLS = ["resnet50", "vgg11", "alexnet", "densenet121", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0",
         "convnext_tiny", "shufflenet_v2_x0_5", "regnet_y_400mf", "squeezenet1_0", "googlenet"]


@pytest.mark.slow
@pytest.mark.parametrize("name", TOOLS)
def test_against_the_tools(name):
    """ptflops (pytorch backend without functional patching, and aten), thop 0.1.1, fvcore (eval and training
    mode) and torchinfo on torchvision's model: equal to the convention, less the known quirks above."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    ptflops, thop = pytest.importorskip("ptflops"), pytest.importorskip("thop")
    fvcore_nn, torchinfo = pytest.importorskip("fvcore.nn"), pytest.importorskip("torchinfo")
    import contextlib
    import io

    kw = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
    model = getattr(torchvision.models, name)(**kw).eval()
    net = spec(name, aux_logits=False) if name == "googlenet" else spec(name)
    shape, x = net.input_shape, torch.zeros(1, *net.input_shape)
    got = {}
    with contextlib.redirect_stdout(io.StringIO()):
        info = ptflops.get_model_complexity_info
        got["ptflops"] = info(model, shape, as_strings=False, print_per_layer_stat=False, backend="pytorch",
                              backend_specific_config={"count_functional": False})[0]
        got["ptflops-aten"] = info(model, shape, as_strings=False, print_per_layer_stat=False, backend="aten")[0]
        got["thop"] = thop.profile(model, inputs=(x,), verbose=False)[0]
        got["fvcore"] = fvcore_nn.FlopCountAnalysis(model, x).unsupported_ops_warnings(False).total()
        model.train()
        two = torch.zeros(2, *shape)  # batch norm in training mode needs two values a channel
        got["fvcore-train"] = fvcore_nn.FlopCountAnalysis(model, two).unsupported_ops_warnings(False).total() // 2
        model.eval()
        got["torchinfo"] = torchinfo.summary(model, input_size=(1, *shape), verbose=0).total_mult_adds
    ours = flops.totals(net.graph)
    assert {t: int(v) + QUIRKS.get((name, t), 0) for t, v in got.items()} == {t: ours[t] for t in got}


# ---- the command line ----------------------------------------------------------------------------------

def _cli(*args: str):
    from click.testing import CliRunner

    from graphdsl.cli import main

    return CliRunner().invoke(main, list(args))


def test_cli_flops_explain_is_the_golden():
    result = _cli("flops", str(SPECS / "resnet50.cnn"), "--explain")
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip("\n") == (GOLDEN / "flops_resnet50_explain.txt").read_text().rstrip("\n")


def test_cli_flops_json_and_one_convention():
    result = _cli("flops", str(SPECS / "resnet50.cnn"), "--convention", "flops", "--format", "json")
    assert result.exit_code == 0, result.output
    assert "8178368512" in result.stdout.replace(",", "") and "ptflops" not in result.stdout
    bad = _cli("flops", str(SPECS / "resnet50.cnn"), "--convention", "gflops")
    assert bad.exit_code == 2


def test_cli_summary_convention_and_check_json_costs():
    result = _cli("summary", str(SPECS / "alexnet.cnn"), "--convention", "flops")
    assert result.exit_code == 0 and "FLOPs" in result.stdout
    data = json.loads(_cli("check", str(SPECS / "resnet50.cnn"), "--format", "json").stdout)
    assert data["costs"]["macs"] == 4_089_184_256 and data["costs"]["flops"] == 2 * 4_089_184_256

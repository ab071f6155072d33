#!/usr/bin/env python3
"""geoloc vs ONNX Runtime (and PyTorch, where it is installed) for ResNet-18/50 inference on this CPU.

Same machine, same run, interleaved rounds: for every model (resnet18, resnet50), batch (1, 8) and thread
count (1, 2), each engine runs for --seconds per round and the best round counts (the machine may be
shared: best-of-N is the least disturbed). geoloc runs through geoloc_bench_nn's BM_cmp_resnet*_inference
(the bare backbone, eval, NoGradGuard, NHWC) once per CPU path given (--paths; e.g. avx2 on an AVX-512
machine shows what the AVX2 kernels do, though not on an AVX2-only CPU).

ONNX Runtime runs the same network as an ONNX graph built here with the onnx package (ResNet v1.5 as in
torchvision: stride on the 3x3 conv, eval-mode BN already folded into the convolutions as ORT's own graph
optimiser would fold it; random weights: the timing does not depend on them), NCHW, all graph
optimisations, intra-op threads = the thread count. With torch + torchvision importable, PyTorch runs
torchvision's resnet18/50 (fc removed) under inference_mode in channels_last, and the ONNX graph is
exported from it instead.

  bench/compare_engines.py --bench build/bin/geoloc_bench_nn [--rounds 3 --seconds 2 --paths avx512,avx2]
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
import onnxruntime as ort

BLOCKS = {"resnet18": ("basic", [2, 2, 2, 2]), "resnet50": ("bottleneck", [3, 4, 6, 3])}


def build_onnx(model):
    """The ResNet backbone (to the global average pool) as an ONNX graph with random weights."""
    rng = np.random.default_rng(0)
    nodes, inits = [], []
    count = [0]

    def name(p):
        count[0] += 1
        return f"{p}{count[0]}"

    def conv(x, ci, co, k, s, relu):
        w, b, y = name("w"), name("b"), name("conv")
        inits.append(numpy_helper.from_array(
            (rng.standard_normal((co, ci, k, k)) * np.sqrt(2.0 / (ci * k * k))).astype(np.float32), w))
        inits.append(numpy_helper.from_array(np.zeros(co, np.float32), b))
        nodes.append(helper.make_node("Conv", [x, w, b], [y], kernel_shape=[k, k], strides=[s, s],
                                      pads=[k // 2] * 4))
        if relu:
            r = name("relu")
            nodes.append(helper.make_node("Relu", [y], [r]))
            return r
        return y

    def add_relu(a, b):
        s, r = name("add"), name("relu")
        nodes.append(helper.make_node("Add", [a, b], [s]))
        nodes.append(helper.make_node("Relu", [s], [r]))
        return r

    kind, layers = BLOCKS[model]
    x = conv("input", 3, 64, 7, 2, True)
    p = name("pool")
    nodes.append(helper.make_node("MaxPool", [x], [p], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
    x, ci = p, 64
    for stage, n in enumerate(layers):
        width = 64 << stage
        for i in range(n):
            s = 2 if (i == 0 and stage > 0) else 1
            if kind == "basic":
                co = width
                y = conv(conv(x, ci, width, 3, s, True), width, width, 3, 1, False)
            else:
                co = 4 * width
                y = conv(conv(conv(x, ci, width, 1, 1, True), width, width, 3, s, True), width, co, 1, 1, False)
            sc = conv(x, ci, co, 1, s, False) if (s != 1 or ci != co) else x
            x, ci = add_relu(y, sc), co
    g = name("gap")
    nodes.append(helper.make_node("GlobalAveragePool", [x], [g]))
    nodes.append(helper.make_node("Flatten", [g], ["embedding"]))
    graph = helper.make_graph(nodes, model, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])],
                              [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", ci])], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m.SerializeToString()


def torch_model(model):
    try:
        import torch
        import torchvision
    except ImportError:
        return None
    net = getattr(torchvision.models, model)()
    net.fc = torch.nn.Identity()
    return net.eval().to(memory_format=torch.channels_last)


def onnx_bytes(model, tnet):
    if tnet is None:
        return build_onnx(model), "built with the onnx package"
    import io
    import torch
    import warnings
    f = io.BytesIO()
    # dynamo=False: the TorchScript exporter, which needs no onnxscript (the torch.export-based default
    # since PyTorch 2.9 does); the legacy exporter's deprecation warning is silenced
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(tnet, torch.randn(1, 3, 224, 224), f, input_names=["input"], output_names=["embedding"],
                          dynamic_axes={"input": {0: "N"}}, opset_version=17, dynamo=False)
    return f.getvalue(), "exported from torchvision"


def time_loop(fn, seconds):
    fn()  # warm-up
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        t = time.perf_counter() - t0
        if t >= seconds:
            return t / n


def ort_round(sess, x, seconds):
    return time_loop(lambda: sess.run(None, {"input": x}), seconds)


def torch_round(tnet, batch, threads, seconds):
    import torch
    torch.set_num_threads(threads)
    x = torch.randn(batch, 3, 224, 224).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        return time_loop(lambda: tnet(x), seconds)


def geoloc_round(bench, model, batch, threads, path, seconds):
    env = dict(os.environ, GEOLOC_THREADS=str(threads), GEOLOC_CPU=path)
    out = subprocess.run([bench, f"--benchmark_filter=BM_cmp_{model}_inference/{batch}/224/",
                          f"--benchmark_min_time={seconds}", "--benchmark_format=json"],
                         env=env, check=True, capture_output=True, text=True).stdout
    b = json.loads(out)["benchmarks"][0]
    return b["real_time"] / 1e3 if b["time_unit"] == "ms" else b["real_time"] / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", required=True, help="geoloc_bench_nn")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--models", default="resnet18,resnet50")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--paths", default="", help="geoloc CPU paths to run (default: the one it picks)")
    a = ap.parse_args()
    paths = [p for p in a.paths.split(",") if p] or [""]
    print(f"onnxruntime {ort.__version__}, onnx {onnx.__version__}, python {platform.python_version()}")
    results = []
    for model in a.models.split(","):
        tnet = torch_model(model)
        blob, how = onnx_bytes(model, tnet)
        print(f"{model}: ONNX graph {how}; PyTorch: {'torchvision' if tnet is not None else 'not installed, not measured'}")
        for threads in map(int, a.threads.split(",")):
            so = ort.SessionOptions()
            so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            sess = ort.InferenceSession(blob, so, providers=["CPUExecutionProvider"])
            for batch in map(int, a.batches.split(",")):
                x = np.random.default_rng(1).standard_normal((batch, 3, 224, 224)).astype(np.float32)
                best = {}
                for _ in range(a.rounds):
                    best["ort"] = min(best.get("ort", 1e9), ort_round(sess, x, a.seconds))
                    if tnet is not None:
                        best["torch"] = min(best.get("torch", 1e9), torch_round(tnet, batch, threads, a.seconds))
                    for p in paths:
                        k = "geoloc" + (f"[{p}]" if p else "")
                        best[k] = min(best.get(k, 1e9), geoloc_round(a.bench, model, batch, threads, p, a.seconds))
                results.append((model, batch, threads, best))
                line = f"{model} b{batch} t{threads}: " + ", ".join(f"{k} {batch / v:.1f} img/s" for k, v in best.items())
                for k, v in best.items():
                    if k.startswith("geoloc"):
                        line += f"; {k}/ORT {best['ort'] / v:.2f}"
                        if "torch" in best:
                            line += f", {k}/PyTorch {best['torch'] / v:.2f}"
                print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

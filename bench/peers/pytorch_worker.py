#!/usr/bin/python3
"""PyTorch peer of `npm run bench` (bench/peers/pytorch.ts starts it with Debian's
/usr/bin/python3, where torch is installed). Reads one JSON request per line on
stdin -- {"op", "layout", "shape", "threads", "budget"} -- times that op on the
CPU (median after warm-up, as the Node side does) and answers one JSON line.
The first line written says whether torch imported, and its version."""
import json
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except Exception as e:  # noqa: BLE001 - any import failure means "skip this peer"
    print(json.dumps({"ready": False, "error": repr(e)}), flush=True)
    sys.exit(0)

print(json.dumps({"ready": True, "version": torch.__version__}), flush=True)

_cache = {}


def tensors(shape, layout):
    """Inputs for one (shape, layout), kept while requests use that shape."""
    key = (tuple(shape), layout)
    if key not in _cache:
        for k in [k for k in _cache if k[0] != key[0]]:
            del _cache[k]
        g = torch.Generator().manual_seed(0)
        x = torch.randn(*shape, generator=g)
        dy = torch.randn(*shape, generator=g)
        if layout == "NHWC" and len(shape) == 4:
            x = x.contiguous(memory_format=torch.channels_last)
            dy = dy.contiguous(memory_format=torch.channels_last)
        c = shape[1]
        t = dict(x=x, dy=dy, w=torch.full((c,), 1.5), b=torch.full((c,), 0.25),
                 rm=torch.zeros(c), rv=torch.ones(c), dims=[0] + list(range(2, len(shape))))
        _, t["save_mean"], t["save_invstd"] = torch.native_batch_norm(
            x, t["w"], t["b"], t["rm"].clone(), t["rv"].clone(), True, 0.1, 1e-5)
        _cache[key] = t
    return _cache[key]


def op_fn(op, t):
    if op == "moments":
        return lambda: torch.var_mean(t["x"], dim=t["dims"], unbiased=False)
    if op == "forward-train":
        return lambda: F.batch_norm(t["x"], t["rm"], t["rv"], t["w"], t["b"], True, 0.1, 1e-5)
    if op == "forward-eval":
        return lambda: F.batch_norm(t["x"], t["rm"], t["rv"], t["w"], t["b"], False, 0.1, 1e-5)
    if op == "backward-train":  # the kernel autograd calls for BatchNorm in training mode
        return lambda: torch.ops.aten.native_batch_norm_backward(
            t["dy"], t["x"], t["w"], t["rm"], t["rv"], t["save_mean"], t["save_invstd"], True, 1e-5,
            [True, True, True])
    raise ValueError("unknown op " + op)


def median(values):
    s = sorted(values)
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2


def measure(fn, budget, min_samples=5, max_samples=2000, warmup=3):
    for _ in range(warmup):
        fn()
    samples = []
    start = time.perf_counter()
    while len(samples) < min_samples or (time.perf_counter() - start < budget and len(samples) < max_samples):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return median(samples) * 1e3, len(samples)


with torch.no_grad():
    for line in sys.stdin:
        try:
            req = json.loads(line)
            torch.set_num_threads(int(req["threads"]))
            ms, n = measure(op_fn(req["op"], tensors(req["shape"], req["layout"])), float(req["budget"]))
            print(json.dumps({"ms": ms, "samples": n, "threads": torch.get_num_threads()}), flush=True)
        except Exception as e:  # noqa: BLE001 - report to the caller, keep serving
            print(json.dumps({"error": repr(e)}), flush=True)

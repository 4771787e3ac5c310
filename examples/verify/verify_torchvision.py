#!/usr/bin/python3
"""Checks `rebatch recompute` against PyTorch on torchvision ResNet-18 and MobileNetV2.

    npm run build && /usr/bin/python3 examples/verify/verify_torchvision.py [WORKDIR]

Random-init weights (no downloads) with randomized stored BN statistics, exported with BN kept
(TrainingMode.PRESERVE, eval()) at opsets 13 and 17. For each model and estimator it compares
the statistics rebatch writes with PyTorch's (forward pre-hooks on every BN in train() over the
same batches, float64), and the written model's onnxruntime output with PyTorch's eval() output
with those statistics loaded. Models are written to WORKDIR (default /tmp/rebatch-verify), not
committed.
"""
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import torch
import torchvision
from onnx import numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORK = sys.argv[1] if len(sys.argv) > 1 else '/tmp/rebatch-verify'
BATCH = 16
os.makedirs(WORK, exist_ok=True)


# PyTorch's own population statistics (train() forward hooks, float64): the same
# reference the committed CLI fixtures are made with.
sys.path.insert(0, os.path.join(ROOT, 'test', 'fixtures', 'onnx'))
from make_onnx_fixtures import bn_modules as bns, reference_stats  # noqa: E402


def torch_population(model, data):
    """{'pooled' | 'batch-average': [(mean, var) per BN layer]} over batches of BATCH samples."""
    stats = reference_stats(model, data)
    return {estimator: [(np.array(s[key]['mean']), np.array(s[key]['var'])) for s in stats]
            for estimator, key in (('pooled', 'pooled'), ('batch-average', 'batch_average'))}


def written_stats(path):
    m = onnx.load(path)
    init = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    by_out = {o: n for n in m.graph.node for o in n.output}

    def value(name):
        while name not in init:
            name = by_out[name].input[0]  # Identity
        return init[name].astype(np.float64)
    return [(value(n.input[3]), value(n.input[4])) for n in m.graph.node if n.op_type == 'BatchNormalization']


def rel(a, b):
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-6)))


def main():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    data = (rng.standard_normal((64, 3, 96, 96)) * 1.2 + 0.2).astype(np.float32)
    data_file = os.path.join(WORK, 'calib.npy')
    np.save(data_file, data)
    results = []
    for name, ctor in (('resnet18', torchvision.models.resnet18), ('mobilenet_v2', torchvision.models.mobilenet_v2)):
        model = ctor()
        for m in bns(model):
            m.running_mean.data = torch.randn(m.num_features) * 0.3
            m.running_var.data = torch.rand(m.num_features) + 0.5
        ref = torch_population(model, data)
        for opset in (13, 17):
            onnx_file = os.path.join(WORK, f'{name}_op{opset}.onnx')
            model.eval()
            torch.onnx.export(model, torch.from_numpy(data[:2]), onnx_file, opset_version=opset,
                              training=torch.onnx.TrainingMode.PRESERVE, input_names=['input'], output_names=['logits'],
                              dynamic_axes={'input': {0: 'N'}, 'logits': {0: 'N'}})
            for estimator in ('pooled', 'batch-average'):
                out = os.path.join(WORK, f'{name}_op{opset}.{estimator}.onnx')
                subprocess.run(['node', os.path.join(ROOT, 'bin', 'rebatch.js'), 'recompute', onnx_file, '--data', data_file,
                                '--batch-size', str(BATCH), '--estimator', estimator, '--out', out, '--json'],
                               check=True, stdout=subprocess.DEVNULL)
                got = written_stats(out)
                worst_mean = max(rel(g[0], r[0]) for g, r in zip(got, ref[estimator]))
                # Means near 0 make the relative error ill-posed: also measure the error in units of the channel's std.
                worst_mean_std = max(float(np.max(np.abs(g[0] - r[0]) / np.sqrt(r[1]))) for g, r in zip(got, ref[estimator]))
                worst_var = max(rel(g[1], r[1]) for g, r in zip(got, ref[estimator]))
                # PyTorch eval() with these statistics vs onnxruntime on the written model.
                layers = bns(model)
                saved = [(m.running_mean.clone(), m.running_var.clone()) for m in layers]
                for m, (mu, var) in zip(layers, ref[estimator]):
                    m.running_mean.data = torch.from_numpy(mu).float()
                    m.running_var.data = torch.from_numpy(var).float()
                with torch.no_grad():
                    y_torch = model(torch.from_numpy(data[:8])).numpy()
                for m, (rm, rv) in zip(layers, saved):
                    m.running_mean.data, m.running_var.data = rm, rv
                y_file = os.path.join(WORK, 'y.json')
                js = ("const ort=require(process.argv[1]);const fs=require('fs');(async()=>{"
                      "const b=fs.readFileSync(process.argv[3]);const h=b.readUInt16LE(8);"
                      "const x=new Float32Array(b.buffer.slice(b.byteOffset+10+h,b.byteOffset+10+h+8*3*96*96*4));"
                      "const s=await ort.InferenceSession.create(process.argv[2]);"
                      "const o=await s.run({input:new ort.Tensor('float32',x,[8,3,96,96])});"
                      "fs.writeFileSync(process.argv[4],JSON.stringify(Array.from(o.logits.data)));})()")
                subprocess.run(['node', '-e', js, os.path.join(ROOT, 'node_modules', 'onnxruntime-node'), out, data_file, y_file], check=True)
                y_ort = np.array(json.load(open(y_file)), dtype=np.float64).reshape(y_torch.shape)
                out_err = float(np.max(np.abs(y_ort - y_torch)) / np.max(np.abs(y_torch)))
                row = dict(model=name, opset=opset, estimator=estimator, bn_layers=len(got),
                           max_rel_mean=worst_mean, max_mean_err_in_std=worst_mean_std, max_rel_var=worst_var, output_max_abs_err_over_max=out_err)
                results.append(row)
                print(json.dumps(row))
    ok = all(r['max_mean_err_in_std'] < 1e-4 and r['max_rel_var'] < 1e-4 and r['output_max_abs_err_over_max'] < 1e-4 for r in results)
    print('mean within 1e-4 std, var within 1e-4 relative, outputs within 1e-4 relative' if ok else 'SOME CHECK ABOVE 1e-4')


if __name__ == '__main__':
    main()

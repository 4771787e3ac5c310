#!/usr/bin/python3
"""Trains and exports the model of `rebatch demo`, and writes its data.

    /usr/bin/python3 examples/digits/make_demo.py      (python3-torch 1.13, python3-onnx)

Data: the scikit-learn digits set (1797 8×8 images, UCI, CC BY 4.0), read from the CSV
that Debian's python3-sklearn ships. Pixels (0..16) are scaled to [0, 1].

The model is a small CNN whose BatchNorm layers use a small momentum (0.01) and whose
training ends with a short phase at a high learning rate: the weights move faster than
the EMA follows, so the exported running statistics are stale — the situation in which
the paper recommends recomputing them (PreciseBN). It is exported with BN kept
(TrainingMode.PRESERVE, the model in eval()).

Files (float32 .npy, first axis = samples):
  model.onnx          the CNN, input 'image' [N, 1, 8, 8], output 'logits' [N, 10]
  calib.npy           400 training images (labels unused): calibration data
  test.npy            497 held-out images, test_labels.npy their labels (uint8)
  target_calib.npy    the 400 calibration images in the target domain (unlabeled)
  target_test.npy     the test images in the target domain
The target domain is the same digits shot differently: contrast × 0.35, offset + 0.45
and Gaussian noise (σ 0.06), as a different scanner might give (paper §5.1).
"""
import gzip
import os

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
CSV = '/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz'
MOMENTUM = 0.01


def load_digits():
    with gzip.open(CSV, 'rt') as f:
        rows = np.loadtxt(f, delimiter=',', dtype=np.float32)
    return rows[:, :64].reshape(-1, 1, 8, 8) / 16.0, rows[:, 64].astype(np.int64)


def to_target_domain(x, rng):
    return (x * 0.35 + 0.45 + rng.normal(0, 0.06, x.shape)).astype(np.float32)


class DigitsNet(nn.Module):
    def __init__(self):
        super().__init__()
        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout, momentum=MOMENTUM), nn.ReLU()]
        self.features = nn.Sequential(*block(1, 16), *block(16, 32), nn.MaxPool2d(2), *block(32, 64),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        return self.head(self.features(x))


def accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        return (model(torch.from_numpy(x)).argmax(1).numpy() == y).mean()


def main():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x, y = load_digits()
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    x_train, y_train, x_test, y_test = x[:1300], y[:1300], x[1300:], y[1300:]

    model = DigitsNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    # Main phase, then a short phase at a high learning rate: the weights move quickly
    # while the BN EMA (momentum 0.01, ~100 steps of memory) lags behind.
    schedule = [0.05] * 16 + [0.15]
    loss_fn = nn.CrossEntropyLoss()
    for epoch, lr in enumerate(schedule):
        for g in opt.param_groups:
            g['lr'] = lr
        model.train()
        perm = torch.randperm(len(x_train))
        for s in range(0, len(perm), 32):
            idx = perm[s:s + 32]
            opt.zero_grad()
            loss = loss_fn(model(torch.from_numpy(x_train[idx])), torch.from_numpy(y_train[idx]))
            loss.backward()
            opt.step()
        print(f'epoch {epoch} lr {lr} test accuracy (EMA statistics) {accuracy(model, x_test, y_test):.3f}')

    calib = x_train[:400]
    target_calib = to_target_domain(calib, rng)
    target_test = to_target_domain(x_test, rng)

    # For the record: what PyTorch itself gets with recomputed (pooled, batch 32) statistics.
    precise = DigitsNet()
    precise.load_state_dict(model.state_dict())
    for m in precise.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average of batch means; close to pooled
    precise.train()
    with torch.no_grad():
        for s in range(0, len(calib), 32):
            precise(torch.from_numpy(calib[s:s + 32]))
    print(f'EMA statistics: test accuracy {accuracy(model, x_test, y_test):.3f}; '
          f'recomputed (PyTorch, cumulative average): {accuracy(precise, x_test, y_test):.3f}')
    print(f'target domain, source EMA statistics: {accuracy(model, target_test, y_test):.3f}')

    model.eval()
    torch.onnx.export(model, torch.from_numpy(x_test[:2]), os.path.join(HERE, 'model.onnx'), opset_version=13,
                      training=torch.onnx.TrainingMode.PRESERVE, input_names=['image'], output_names=['logits'],
                      dynamic_axes={'image': {0: 'N'}, 'logits': {0: 'N'}})
    np.save(os.path.join(HERE, 'calib.npy'), calib)
    np.save(os.path.join(HERE, 'test.npy'), x_test)
    np.save(os.path.join(HERE, 'test_labels.npy'), y_test.astype(np.uint8))
    np.save(os.path.join(HERE, 'target_calib.npy'), target_calib)
    np.save(os.path.join(HERE, 'target_test.npy'), target_test)


if __name__ == '__main__':
    main()

#!/usr/bin/env node
// Checks rebatch against the PyTorch golden fixtures (test/fixtures/batchnorm.json).
// One checker serves jest (test/pytorch-fixtures.test.ts) and plain Node, so the
// same checks run where jest cannot: arm64 Node under qemu, old-CPU emulation.
// Tolerances: y within 2e-5 + 1e-5·|y| (float32 output); statistics within
// 1e-6 relative; gradients within 2e-5 + 1e-4·|g|.
// Usage: node scripts/fixture-check.js [module-path]   (default: the package root)
'use strict';
const fs = require('fs');
const path = require('path');

function loadFixtures() {
  return JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'test', 'fixtures', 'batchnorm.json'), 'utf8'));
}

/** Compares element by element; returns a message for the first mismatch, or null. */
function mismatch(got, want, rtol, atol, what) {
  if (got.length !== want.length) return `${what}: length ${got.length}, want ${want.length}`;
  for (let i = 0; i < want.length; i++) {
    if (!(Math.abs(got[i] - want[i]) <= atol + rtol * Math.abs(want[i]))) return `${what}[${i}] = ${got[i]}, want ${want[i]}`;
  }
  return null;
}

/** Runs one fixture case (forward, backward, running statistics); returns the failures. */
function checkCase(rebatch, c) {
  const failures = [];
  const expect = (got, want, rtol, atol, what) => {
    const m = mismatch(got, want, rtol, atol, `${c.name} ${what}`);
    if (m) failures.push(m);
  };
  const x = Float32Array.from(c.x);
  const common = { layout: c.layout, weight: c.weight, bias: c.bias, eps: c.eps, relu: c.relu || false, groups: c.groups };
  const fwd = c.training
    ? rebatch.batchNorm(x, c.shape, { ...common, training: true })
    : rebatch.batchNorm(x, c.shape, { ...common, training: false, mean: c.running_mean, variance: c.running_var });
  expect(fwd.y, c.y, 1e-5, 2e-5, 'y');
  if (c.training) {
    expect(fwd.mean, c.save_mean, 1e-6, 1e-7, 'mean');
    expect(fwd.invstd, c.save_invstd, 1e-6, 0, 'invstd');
  }
  const grads = rebatch.batchNormBackward(Float32Array.from(c.dy), x, c.shape,
    { ...common, training: c.training, mean: fwd.mean, invstd: fwd.invstd });
  expect(grads.dx, c.dx, 1e-4, 2e-5, 'dx');
  if (c.dweight) expect(grads.dweight, c.dweight, 1e-4, 2e-5, 'dweight');
  if (c.dbias) expect(grads.dbias, c.dbias, 1e-4, 2e-5, 'dbias');
  if (c.training && c.running_mean_out && !c.groups) {
    const rm = Float32Array.from(c.running_mean_in);
    const rv = Float32Array.from(c.running_var_in);
    rebatch.updateRunningStats(rm, rv, rebatch.moments(x, c.shape, { layout: c.layout }), { momentum: c.momentum });
    expect(rm, c.running_mean_out, 1e-6, 1e-7, 'running_mean');
    expect(rv, c.running_var_out, 1e-6, 1e-7, 'running_var');
  }
  return failures;
}

/** PyTorch issue 60528 (DESIGN.md §2): y[0,0,0] = -1.8974, running_mean[0] = 0.4, running_var[0] = 1.16667. */
function checkKnownVector(rebatch, k) {
  const failures = [];
  const x = Float32Array.from(k.x);
  const { y } = rebatch.batchNorm(x, k.shape, { training: true });
  const rm = new Float32Array(3);
  const rv = new Float32Array(3).fill(1);
  rebatch.updateRunningStats(rm, rv, rebatch.moments(x, k.shape), { momentum: 0.1 });
  for (const m of [
    mismatch([y[0], rm[0], rv[0]], [-1.8974, 0.4, 1.16667], 0, 5e-5, 'known vector (y, running_mean, running_var)'),
    mismatch(y, k.y, 1e-5, 2e-5, 'known vector y'),
    mismatch(rm, k.running_mean, 1e-6, 0, 'known vector running_mean'),
    mismatch(rv, k.running_var, 1e-6, 0, 'known vector running_var'),
  ]) if (m) failures.push(m);
  return failures;
}

/** Every ISA this machine supports, with 1 and 2 threads. */
function configurations(rebatch) {
  return rebatch.supportedIsas().flatMap((isa) => [[isa, 1], [isa, 2]]);
}

module.exports = { loadFixtures, checkCase, checkKnownVector, configurations };

if (require.main === module) {
  const given = process.argv[2];
  const rebatch = require(given ? path.resolve(given) : path.join(__dirname, '..'));
  const fixtures = loadFixtures();
  let passed = 0;
  let failed = 0;
  for (const [isa, threads] of configurations(rebatch)) {
    rebatch.setIsa(isa);
    rebatch.setNumThreads(threads);
    for (const c of [...fixtures.cases, ...fixtures.ghost, fixtures.known_vector]) {
      const f = c === fixtures.known_vector ? checkKnownVector(rebatch, c) : checkCase(rebatch, c);
      if (f.length) {
        failed++;
        console.log(`FAIL ${isa} threads=${threads} ${c.name}: ${f[0]}`);
      } else {
        passed++;
      }
    }
  }
  console.log(`fixture-check on ${process.platform}-${process.arch} (${configurations(rebatch).map((c) => c.join('/')).join(', ')})`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = failed ? 1 : 0;
}

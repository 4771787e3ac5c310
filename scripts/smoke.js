#!/usr/bin/env node
// A small end-to-end check of an installed or built rebatch, with no
// dependencies: loads the package, checks the known vector of PyTorch issue
// 60528 and a random case against float64 arithmetic done here, and prints
// the kernels in use. Used by the package check, and under qemu for arm64
// and for x86-64 CPUs without AVX.
// Usage: node scripts/smoke.js [module-path-or-name] [--expect-isa NAME]
'use strict';
const args = process.argv.slice(2);
const expectIsa = args.includes('--expect-isa') ? args[args.indexOf('--expect-isa') + 1] : undefined;
const path = require('path');
const given = args.find((a, i) => !a.startsWith('--') && args[i - 1] !== '--expect-isa');
// A path is taken from the current directory; a bare name ('rebatch') is resolved as a package.
const target = !given ? path.join(__dirname, '..') : given.startsWith('.') || path.isAbsolute(given) ? path.resolve(given) : given;
const rebatch = require(require.resolve(target, { paths: [process.cwd()] }));

function fail(message) {
  console.error(`smoke: FAIL ${message}`);
  process.exit(1);
}
function close(got, want, tol, what) {
  if (!(Math.abs(got - want) <= tol * (1 + Math.abs(want)))) fail(`${what} = ${got}, want ${want}`);
}

// PyTorch issue 60528: x[n,c,l] = 4c + n + l + 1, shape [4, 3, 4], BatchNorm1d(3), momentum 0.1.
const x = new Float32Array(48);
for (let n = 0; n < 4; n++) for (let c = 0; c < 3; c++) for (let l = 0; l < 4; l++) x[(n * 3 + c) * 4 + l] = 4 * c + n + l + 1;
const { y } = rebatch.batchNorm(x, [4, 3, 4], { training: true });
close(y[0], -1.8974, 1e-4, 'y[0,0,0]');
const rm = new Float32Array(3);
const rv = new Float32Array(3).fill(1);
rebatch.updateRunningStats(rm, rv, rebatch.moments(x, [4, 3, 4]), { momentum: 0.1 });
close(rm[0], 0.4, 1e-6, 'running_mean[0]');
close(rv[0], 1.16667, 1e-5, 'running_var[0]');

// A channels-last case against float64 arithmetic, large enough for the SIMD and threaded paths.
const N = 16, H = 20, W = 20, C = 13;
const big = new Float32Array(N * H * W * C);
let s = 12345;
for (let i = 0; i < big.length; i++) { s = (s * 1103515245 + 12345) >>> 0; big[i] = 100 + (s / 2 ** 32) * 4; }
const stats = rebatch.moments(big, [N, H, W, C], { layout: 'NHWC' });
for (let c = 0; c < C; c++) {
  let sum = 0, q = 0;
  for (let r = 0; r < N * H * W; r++) sum += big[r * C + c];
  const mean = sum / (N * H * W);
  for (let r = 0; r < N * H * W; r++) q += (big[r * C + c] - mean) ** 2;
  close(stats.mean[c], mean, 1e-9, `mean[${c}]`);
  close(stats.variance()[c], q / (N * H * W), 1e-6, `variance[${c}]`);
}
const fwd = rebatch.batchNorm(big, [N, H, W, C], { layout: 'NHWC', training: true });
close(fwd.y[5], (big[5] - stats.mean[5]) / Math.sqrt(stats.variance()[5] + 1e-5), 1e-5, 'y[5]');

if (expectIsa && rebatch.isa() !== expectIsa) fail(`isa() = ${rebatch.isa()}, want ${expectIsa}`);
console.log(`smoke: ok (rebatch on ${process.platform}-${process.arch}, Node ${process.version}, kernels ${rebatch.isa()}, ${rebatch.getNumThreads()} threads)`);

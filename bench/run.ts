// npm run bench: rebatch's kernels per shape, layout and thread count.
// Times are medians after warm-up; GB/s counts the minimum traffic of each op
// (DESIGN.md §4): moments reads x once; training forward reads and writes x
// once (a channel's slice stays in cache between statistics and normalization);
// eval reads and writes once; backward reads x and dy and writes dx.
// Usage: node dist/bench/run.js [--json FILE] [--quick]
import * as fs from 'fs';
import * as os from 'os';
import { batchNorm, batchNormBackward, getNumThreads, isa, Layout, moments, setNumThreads } from '../lib';

interface Row {
  op: string; layout: Layout; shape: number[]; threads: number; impl: string; medianMs: number; gbPerS: number;
  trafficModel: string;
}

const SHAPES: number[][] = [[32, 64, 56, 56], [64, 256, 14, 14], [8, 32, 112, 112], [256, 512], [16, 16, 8, 8]];
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const jsonPath = args.includes('--json') ? args[args.indexOf('--json') + 1] : undefined;

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Median wall time of fn in ms, repeating until ~0.3 s (at least 5 runs) after 3 warm-ups. */
function time(fn: () => void): number {
  for (let i = 0; i < 3; i++) fn();
  const samples: number[] = [];
  const budget = quick ? 0.05 : 0.3;
  const start = process.hrtime.bigint();
  while (samples.length < 5 || (Number(process.hrtime.bigint() - start) / 1e9 < budget && samples.length < 2000)) {
    const t0 = process.hrtime.bigint();
    fn();
    samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return median(samples);
}

function physicalShape(shape: number[], layout: Layout): number[] {
  if (shape.length === 2 || layout === 'NCHW') return shape;
  const [n, c, ...spatial] = shape;
  return [n, ...spatial, c];
}

function benchShape(logical: number[], layout: Layout, threads: number): Row[] {
  const dims = physicalShape(logical, layout);
  const size = dims.reduce((a, b) => a * b, 1);
  const c = logical[1];
  const bytes = size * 4;
  const x = new Float32Array(size).map((_, i) => Math.sin(i) * 3 + 1);
  const dy = new Float32Array(size).map((_, i) => Math.cos(i));
  const out = new Float32Array(size);
  const weight = new Float32Array(c).fill(1.5);
  const bias = new Float32Array(c).fill(0.25);
  const fwd = batchNorm(x, dims, { layout, training: true, weight, bias });
  const stats = moments(x, dims, { layout });
  const variance = stats.variance();
  const ops: Array<[string, number, string, () => void]> = [
    ['moments', bytes, 'read x', () => moments(x, dims, { layout })],
    ['forward-train', 2 * bytes, 'read x + write y', () => batchNorm(x, dims, { layout, training: true, weight, bias, out })],
    ['forward-eval', 2 * bytes, 'read x + write y', () => batchNorm(x, dims, { layout, training: false, mean: stats.mean, variance, weight, bias, out })],
    ['backward-train', 3 * bytes, 'read x, dy + write dx', () => batchNormBackward(dy, x, dims, { layout, training: true, weight, mean: fwd.mean, invstd: fwd.invstd, out })],
  ];
  return ops.map(([op, traffic, trafficModel, fn]) => {
    const ms = time(fn);
    return { op, layout, shape: logical, threads, impl: `rebatch-${isa()}`, medianMs: ms, gbPerS: traffic / (ms / 1e3) / 1e9, trafficModel };
  });
}

function main(): void {
  const allThreads = getNumThreads();
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  console.log(`rebatch bench — ${cpu}, ${os.cpus().length} CPUs, Node ${process.version}, kernels: ${isa()}`);
  const rows: Row[] = [];
  const threadCounts = [...new Set([1, allThreads])];
  console.log(['op', 'layout', 'shape', 'threads', 'median ms', 'GB/s'].map((h, i) => h.padEnd([15, 7, 16, 8, 10, 8][i])).join(''));
  for (const shape of SHAPES) {
    for (const layout of ['NCHW', 'NHWC'] as const) {
      if (shape.length === 2 && layout === 'NHWC') continue;
      for (const threads of threadCounts) {
        setNumThreads(threads);
        for (const r of benchShape(shape, layout, threads)) {
          rows.push(r);
          console.log([r.op, r.layout, r.shape.join('x'), String(r.threads), r.medianMs.toFixed(3), r.gbPerS.toFixed(2)]
            .map((v, i) => v.padEnd([15, 7, 16, 8, 10, 8][i])).join(''));
        }
      }
    }
  }
  setNumThreads(allThreads);
  if (jsonPath) {
    fs.writeFileSync(jsonPath, JSON.stringify({ machine: { cpu, cpus: os.cpus().length, node: process.version }, rows }, null, 1));
    console.log(`wrote ${rows.length} rows to ${jsonPath}`);
  }
}

main();

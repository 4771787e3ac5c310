// The functional API's contract: argument errors, tensor objects, in-place
// outputs, ChannelStats, running statistics, async calls and runtime settings.
import {
  batchNorm, batchNormAsync, batchNormBackward, batchNormBackwardAsync, ChannelStats, getNumThreads, isa, moments,
  momentsAsync, setIsa, setNumThreads, supportedIsas, updateRunningStats,
} from '../lib';
import { configurations, expectClose, randomFloats, withConfiguration } from './helpers';

const shape = [2, 3, 4, 4];
const x = randomFloats(96, 1, -1, 2);

describe('argument errors name the argument, the expected and the actual', () => {
  const cases: Array<[string, () => unknown, ErrorConstructor | TypeErrorConstructor | RangeErrorConstructor, RegExp]> = [
    ['x not float32', () => moments(new Float64Array(96) as unknown as Float32Array, shape), TypeError, /x: expected a Float32Array.*got Float64Array\(96\)/],
    ['shape mismatch', () => moments(x, [2, 3, 4, 5]), RangeError, /x: shape \[2, 3, 4, 5\] \(NCHW\) has 120 elements, but x has 96/],
    ['shape too short', () => moments(new Float32Array(4), [4]), RangeError, /shape: expected at least 2 dims/],
    ['shape not integer', () => moments(x, [2, 3, 4, 4.5] as number[]), TypeError, /shape\[3\]: expected an integer/],
    ['empty batch', () => moments(new Float32Array(0), [0, 3]), RangeError, /x: the batch is empty.*N = 0/],
    ['no channels', () => moments(new Float32Array(0), [2, 0, 3]), RangeError, /no channels/],
    ['bad layout', () => moments(x, shape, { layout: 'NWHC' as 'NHWC' }), TypeError, /options.layout: expected 'NCHW' or 'NHWC', got string "NWHC"/],
    ['unknown option', () => moments(x, shape, { grups: 2 } as object), TypeError, /options.grups: unknown option/],
    ['groups not a divisor', () => moments(x, shape, { groups: 3 }), RangeError, /options.groups: expected a divisor of the batch size N = 2, got 3/],
    ['training missing', () => batchNorm(x, shape, {} as { training: boolean }), TypeError, /options.training: expected a boolean, got undefined/],
    ['weight length', () => batchNorm(x, shape, { training: true, weight: [1, 2] }), RangeError, /options.weight: expected 3 values \(one per channel\), got 2/],
    ['weight type', () => batchNorm(x, shape, { training: true, weight: 'abc' as unknown as number[] }), TypeError, /options.weight: expected a Float32Array, Float64Array or number\[\] of 3 values, got string/],
    ['negative eps', () => batchNorm(x, shape, { training: true, eps: -1 }), RangeError, /options.eps: expected a number >= 0, got -1/],
    ['one value per channel', () => batchNorm(new Float32Array(3), [1, 3], { training: true }), RangeError, /Expected more than 1 value per channel when training, got input with shape \[1, 3\]/],
    ['ghost batch of one value', () => batchNorm(new Float32Array(12), [4, 3], { training: true, groups: 4 }), RangeError, /more than 1 value per channel.*groups = 4 leaves 1 sample per group/],
    ['eval without stats', () => batchNorm(x, shape, { training: false }), TypeError, /options.mean: expected 3 values when training is false, got undefined/],
    ['stats in training', () => batchNorm(x, shape, { training: true, mean: [0, 0, 0] }), TypeError, /options.mean: not used when training is true/],
    ['out length', () => batchNorm(x, shape, { training: true, out: new Float32Array(10) }), RangeError, /options.out: expected 96 elements, got 10/],
    ['out overlapping', () => batchNorm(x, shape, { training: true, out: new Float32Array(x.buffer, 4, 96 - 1).subarray(0) as Float32Array }), RangeError, /options.out: expected 96 elements|overlaps/],
    ['dy length', () => batchNormBackward(new Float32Array(5), x, shape, { training: true, mean: [0, 0, 0], invstd: [1, 1, 1] }), RangeError, /dy: expected 96 elements \(shape \[2, 3, 4, 4\]\), got 5/],
    ['invstd missing', () => batchNormBackward(x, x, shape, { training: true, mean: [0, 0, 0] } as never), TypeError, /options.invstd: expected a Float32Array, Float64Array or number\[\] of 3 values, got undefined/],
    ['tensor of another type', () => moments({ data: new Int32Array(4), dims: [2, 2], type: 'int32' }), TypeError, /x.type: expected 'float32', got string "int32"/],
    ['threads', () => setNumThreads(0), RangeError, /n: expected an integer from 1 to 1024, got 0/],
    ['isa', () => setIsa('sse9' as 'scalar'), RangeError, /ISA 'sse9' is not supported/],
  ];
  test.each(cases)('%s', (_name, call, type, message) => {
    let error: unknown;
    try {
      call();
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(type);
    expect((error as Error).message).toMatch(message);
  });

  test('partially overlapping out is refused and x is left untouched', () => {
    const buf = new Float32Array(200);
    const input = buf.subarray(0, 96);
    input.set(x);
    const before = Float32Array.from(input);
    expect(() => batchNorm(input, shape, { training: true, out: buf.subarray(50, 146) })).toThrow(/options.out: overlaps an input partially/);
    expect(input).toEqual(before);
  });

  test('async variants reject instead of throwing', async () => {
    await expect(momentsAsync(x, [5, 5])).rejects.toThrow(RangeError);
    await expect(batchNormAsync(x, shape, { training: true, weight: [1] })).rejects.toThrow(/options.weight/);
  });
});

describe('tensors, layouts and outputs', () => {
  test('an onnxruntime-style tensor object is accepted wherever (x, shape) is', () => {
    const tensor = { data: x, dims: shape, type: 'float32' };
    expect(moments(tensor).mean).toEqual(moments(x, shape).mean);
    const a = batchNorm(tensor, { training: true });
    expect(a.y).toEqual(batchNorm(x, shape, { training: true }).y);
    const dy = randomFloats(96, 2);
    const g1 = batchNormBackward({ data: dy, dims: shape }, tensor, { training: true, mean: a.mean, invstd: a.invstd });
    const g2 = batchNormBackward(dy, x, shape, { training: true, mean: a.mean, invstd: a.invstd });
    expect(g1.dx).toEqual(g2.dx);
  });

  test('NHWC is the channels-last permutation of NCHW', () => {
    const [N, C, H, W] = shape;
    const nhwc = new Float32Array(96);
    for (let n = 0; n < N; n++) for (let c = 0; c < C; c++) for (let s = 0; s < H * W; s++) nhwc[(n * H * W + s) * C + c] = x[(n * C + c) * H * W + s];
    const a = batchNorm(x, shape, { training: true, relu: true });
    const b = batchNorm(nhwc, [N, H, W, C], { training: true, relu: true, layout: 'NHWC' });
    expectClose(b.mean, a.mean, 1e-7, 1e-7, 'mean');
    for (let n = 0; n < N; n++) for (let c = 0; c < C; c++) for (let s = 0; s < H * W; s++) {
      expect(b.y[(n * H * W + s) * C + c]).toBeCloseTo(a.y[(n * C + c) * H * W + s], 5);
    }
  });

  test('in place: out = x for the forward and out = dy for the backward', () => {
    const expected = batchNorm(x, shape, { training: true });
    const copy = Float32Array.from(x);
    const r = batchNorm(copy, shape, { training: true, out: copy });
    expect(r.y).toBe(copy);
    expect(copy).toEqual(expected.y);
    const dy = randomFloats(96, 3);
    const want = batchNormBackward(dy, x, shape, { training: true, mean: expected.mean, invstd: expected.invstd }).dx;
    const dyCopy = Float32Array.from(dy);
    batchNormBackward(dyCopy, x, shape, { training: true, mean: expected.mean, invstd: expected.invstd, out: dyCopy });
    expect(dyCopy).toEqual(want);
  });

  test('the per-channel arrays a call returns never overlap (few channels: separate; many: views of one buffer)', () => {
    const disjoint = (a: Float32Array | Float64Array, b: Float32Array | Float64Array) =>
      a.buffer !== b.buffer || a.byteOffset + a.byteLength <= b.byteOffset || b.byteOffset + b.byteLength <= a.byteOffset;
    for (const c of [3, 16, 300]) {
      const xc = randomFloats(2 * c * 5, c, -1, 2);
      const dims = [2, c, 5];
      const f = batchNorm(xc, dims, { training: true });
      const g = batchNormBackward(xc, xc, dims, { training: true, mean: f.mean, invstd: f.invstd });
      for (const [a, b] of [[f.mean, f.invstd], [g.dweight, g.dbias]] as const) {
        expect([a.length, b.length]).toEqual([c, c]);
        expect(disjoint(a, b)).toBe(true);
      }
      const expectedShared = c * 8 > 64;  // Float64Array mean/invstd beyond V8's on-heap size
      expect(f.mean.buffer === f.invstd.buffer).toBe(expectedShared);
      // Writing one leaves the other as it was.
      const before = Float64Array.from(f.invstd);
      f.mean.fill(123);
      expect(Array.from(f.invstd)).toEqual(Array.from(before));
    }
  });

  test('eval with the batch statistics equals training mode', () => {
    const s = moments(x, shape);
    const train = batchNorm(x, shape, { training: true });
    const evalY = batchNorm(x, shape, { training: false, mean: s.mean, variance: s.variance() }).y;
    expectClose(evalY, train.y, 1e-6, 1e-6, 'y');
  });

  test('eval returns invstd = 1 / sqrt(variance + eps) bit for bit, and float64 copies of the given statistics', () => {
    for (const c of [3, 300]) {  // separate arrays, and views of one buffer
      const dims = [2, c, 5];
      const xc = randomFloats(2 * c * 5, c + 1, -1, 2);
      const mean32 = randomFloats(c, 7, -0.5, 0.5);
      const var32 = randomFloats(c, 8, 0.1, 2);
      const wantInvstd = Float64Array.from(var32, (v) => 1 / Math.sqrt(v + 1e-3));
      const wantY = Float32Array.from(xc, (v, i) => (v - mean32[Math.floor(i / 5) % c]) * wantInvstd[Math.floor(i / 5) % c]);
      const given: Array<[ArrayLike<number>, ArrayLike<number>]> = [
        [mean32, var32], [Float64Array.from(mean32), Float64Array.from(var32)], [Array.from(mean32), Array.from(var32)]];
      for (const [mean, variance] of given) {
        const r = batchNorm(xc, dims, { training: false, mean: mean as number[], variance: variance as number[], eps: 1e-3 });
        expect(r.invstd).toBeInstanceOf(Float64Array);
        expect(r.mean).toBeInstanceOf(Float64Array);
        expect(Array.from(r.invstd)).toEqual(Array.from(wantInvstd));
        expect(Array.from(r.mean)).toEqual(Array.from(mean32));
        expectClose(r.y, wantY, 1e-6, 1e-6, 'y');
      }
    }
  });

  test.each(configurations)('|mean|/std = 1e4 keeps the variance within 1e-5 of float64 (%s, %i threads)', (isaName, threads) => {
    withConfiguration(isaName, threads, () => {
      for (const layout of ['NCHW', 'NHWC'] as const) {
        const big = randomFloats(8 * 3 * 1000, 11, -1.7, 1.7).map((v) => v + 1e4);
        const dims = layout === 'NCHW' ? [8, 3, 1000] : [8, 1000, 3];
        const s = moments(big, dims, { layout });
        for (let c = 0; c < 3; c++) {
          let sum = 0;
          let q = 0;
          const at = (n: number, l: number) => (layout === 'NCHW' ? (n * 3 + c) * 1000 + l : (n * 1000 + l) * 3 + c);
          for (let n = 0; n < 8; n++) for (let l = 0; l < 1000; l++) sum += big[at(n, l)];
          const mean = sum / 8000;
          for (let n = 0; n < 8; n++) for (let l = 0; l < 1000; l++) q += (big[at(n, l)] - mean) ** 2;
          expect(Math.abs(s.variance()[c] - q / 8000)).toBeLessThanOrEqual(1e-5 * (q / 8000));
          expect(Math.abs(s.mean[c] - mean)).toBeLessThanOrEqual(1e-9 * Math.abs(mean));
        }
      }
    });
  });
});

describe('ChannelStats', () => {
  // DESIGN.md §2: batches [0, 2] and [10, 12, 14, 16]: pooled variance 35.667.
  const a = moments(Float32Array.of(0, 2), [2, 1]);
  const b = moments(Float32Array.of(10, 12, 14, 16), [4, 1]);

  test('merge pools the batches exactly (worked example)', () => {
    const all = a.merge(b);
    expect(all.count).toBe(6);
    expect(all.mean[0]).toBeCloseTo(9, 12);
    expect(all.variance()[0]).toBeCloseTo(35.6667, 4);
    expect(all.variance({ unbiased: true })[0]).toBeCloseTo(42.8, 12);
  });

  test('variance is biased by default and unbiased on request', () => {
    expect(b.variance()[0]).toBe(5);
    expect(b.variance({ unbiased: true })[0]).toBeCloseTo(20 / 3, 12);
  });

  test('ghost-batch statistics: group() and reduceGroups()', () => {
    const s = moments(Float32Array.of(0, 2, 10, 12, 14, 16), [6, 1], { groups: 3 });
    expect(s.groups).toBe(3);
    expect(Array.from(s.mean)).toEqual([1, 11, 15]);
    expect(s.group(1).mean[0]).toBe(11);
    expect(s.reduceGroups().variance()[0]).toBeCloseTo(35.6667, 4);
    expect(() => s.group(3)).toThrow(RangeError);
  });

  test('JSON round trip keeps every bit', () => {
    const s = moments(randomFloats(60, 9), [5, 3, 4]);
    const back = ChannelStats.fromJSON(JSON.parse(JSON.stringify(s)));
    expect(back.count).toBe(s.count);
    expect(back.mean).toEqual(s.mean);
    expect(back.m2).toEqual(s.m2);
    expect(() => ChannelStats.fromJSON({ count: 2, channels: 3, mean: [1], m2: [1] })).toThrow(/json.mean: expected 3 values/);
  });

  test('merge refuses statistics of another shape', () => {
    expect(() => a.merge(moments(x, shape))).toThrow(/other: expected 1 group\(s\) of 1 channels, got 1 of 3/);
  });
});

describe('updateRunningStats', () => {
  const s = moments(Float32Array.of(1, 2, 3, 4), [4, 1]); // mean 2.5, unbiased var 5/3

  test('momentum blends with the unbiased variance (PyTorch)', () => {
    const rm = new Float32Array([0]);
    const rv = new Float32Array([1]);
    updateRunningStats(rm, rv, s, { momentum: 0.1 });
    expect(rm[0]).toBeCloseTo(0.25, 6);
    expect(rv[0]).toBeCloseTo(0.9 + 0.1 * (5 / 3), 6);
  });

  test('momentum null is the cumulative average', () => {
    const rm = new Float64Array([10]);
    const rv = new Float64Array([0]);
    updateRunningStats(rm, rv, s, { momentum: null, numBatchesTracked: 2 });
    expect(rm[0]).toBeCloseTo(6.25, 12);
    expect(rv[0]).toBeCloseTo(5 / 6, 12);
    expect(() => updateRunningStats(rm, rv, s, { momentum: null })).toThrow(/options.numBatchesTracked: expected a number, got undefined/);
  });

  test('errors', () => {
    const one = moments(Float32Array.of(1, 2), [1, 2]);
    expect(() => updateRunningStats(new Float32Array(2), new Float32Array(2), one, { momentum: 0.1 })).toThrow(/needs more than 1 value per channel, got count = 1/);
    expect(() => updateRunningStats(new Float32Array(2), new Float32Array(1), s, { momentum: 0.1 })).toThrow(/runningMean: expected 1 values/);
    expect(() => updateRunningStats(new Float32Array(1), new Float32Array(1), s, { momentum: 2 })).toThrow(/options.momentum: expected a number in \[0, 1\], got 2/);
  });
});

describe('async variants', () => {
  const big = randomFloats(16 * 8 * 32 * 32, 5);
  const bigShape = [16, 8, 32, 32];

  test('give the same results as the sync calls', async () => {
    const fwd = batchNorm(big, bigShape, { training: true, relu: true, weight: randomFloats(8, 1) });
    const fwdA = await batchNormAsync(big, bigShape, { training: true, relu: true, weight: randomFloats(8, 1) });
    expect(fwdA.y).toEqual(fwd.y);
    expect(fwdA.invstd).toEqual(fwd.invstd);
    const evalOpts = { training: false, mean: fwd.mean, variance: randomFloats(8, 2, 0.5, 2) };
    const evalA = await batchNormAsync(big, bigShape, evalOpts);
    const evalS = batchNorm(big, bigShape, evalOpts);
    expect(evalA.y).toEqual(evalS.y);
    expect(evalA.invstd).toEqual(evalS.invstd);
    expect((await momentsAsync(big, bigShape)).mean).toEqual(moments(big, bigShape).mean);
    const dy = randomFloats(big.length, 6);
    const opts = { training: true, mean: fwd.mean, invstd: fwd.invstd };
    expect((await batchNormBackwardAsync(dy, big, bigShape, opts)).dx).toEqual(batchNormBackward(dy, big, bigShape, opts).dx);
  });

  test('many concurrent calls all settle correctly', async () => {
    const want = batchNorm(big, bigShape, { training: true }).y;
    const results = await Promise.all(Array.from({ length: 8 }, () => batchNormAsync(big, bigShape, { training: true })));
    for (const r of results) expect(r.y).toEqual(want);
  });

  test('an input detached while pending rejects the promise, without a crash', async () => {
    const input = Float32Array.from(big);
    const pending = batchNormAsync(input, bigShape, { training: true });
    structuredClone(input.buffer, { transfer: [input.buffer] });
    expect(input.length).toBe(0);
    await expect(pending).rejects.toThrow(/x: its ArrayBuffer was detached while batchNormAsync was pending/);
  });

  test('an already detached input is a TypeError', async () => {
    const input = Float32Array.from(x);
    structuredClone(input.buffer, { transfer: [input.buffer] });
    await expect(momentsAsync(input, shape)).rejects.toThrow(/x: shape \[2, 3, 4, 4\] \(NCHW\) has 96 elements, but x has 0/);
  });
});

describe('runtime', () => {
  test('isa() reports the kernels in use and setIsa switches them', () => {
    const start = isa();
    expect(supportedIsas()).toContain(start);
    expect(supportedIsas()).toContain('scalar');
    if (process.arch === 'x64') expect(['avx2', 'scalar']).toContain(start);
    if (process.arch === 'arm64') expect(start).toBe('neon');
    setIsa('scalar');
    expect(isa()).toBe('scalar');
    setIsa(start as 'scalar');
    expect(isa()).toBe(start);
  });

  test('thread count is settable and results do not depend on it', () => {
    const big = randomFloats(32 * 16 * 40 * 40, 8);
    const dims = [32, 40, 40, 16];
    const before = getNumThreads();
    setNumThreads(1);
    expect(getNumThreads()).toBe(1);
    const one = batchNorm(big, dims, { training: true, layout: 'NHWC' });
    setNumThreads(2);
    const two = batchNorm(big, dims, { training: true, layout: 'NHWC' });
    expect(two.mean).toEqual(one.mean);
    expect(two.y).toEqual(one.y);
    setNumThreads(before);
  });
});

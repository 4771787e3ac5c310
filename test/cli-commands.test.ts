/** @jest-environment ./test/ort-environment.js */
// stats + merge, fold, inspect, the demo, and the CLI's errors and exit codes.
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { cli, fix, runModel, tmpDir, worstRel } from './cli-helpers';
import { parseModel, readTensorValues } from '../lib/onnx/model';
import { findBatchNorms } from '../lib/onnx/batchnorm';

/** Writes the first `from..to` samples of a float32 C-order .npy as a new .npy. */
function sliceNpy(src: string, from: number, to: number, out: string): void {
  const buf = fs.readFileSync(src);
  const headerLen = buf.readUInt16LE(8);
  const header = buf.subarray(10, 10 + headerLen).toString('latin1');
  const shape = /'shape': \(([^)]*)\)/.exec(header)![1].split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  const per = shape.slice(1).reduce((a, b) => a * b, 1) * 4;
  let h = `{'descr': '<f4', 'fortran_order': False, 'shape': (${[to - from, ...shape.slice(1)].join(', ')}), }`;
  h = h.padEnd(Math.ceil((h.length + 11) / 64) * 64 - 11) + '\n';
  const head = Buffer.alloc(10);
  Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]).copy(head);
  head.writeUInt16LE(h.length, 8);
  fs.writeFileSync(out, Buffer.concat([head, Buffer.from(h, 'latin1'), buf.subarray(10 + headerLen + from * per, 10 + headerLen + to * per)]));
}

function bnStats(file: string): number[][] {
  const m = parseModel(fs.readFileSync(file));
  return findBatchNorms(m).flatMap((bn) => [Array.from(readTensorValues(m, bn.mean.tensor)), Array.from(readTensorValues(m, bn.variance.tensor))]);
}

describe('stats + merge', () => {
  test.each(['pooled', 'batch-average'])('shards at batch boundaries give the model of one recompute (%s)', async (estimator) => {
    const dir = tmpDir();
    sliceNpy(fix('calib_tiny.npy'), 0, 16, path.join(dir, 'a.npy'));
    sliceNpy(fix('calib_tiny.npy'), 16, 48, path.join(dir, 'b.npy'));
    sliceNpy(fix('calib_tiny.npy'), 48, 50, path.join(dir, 'c.npy'));
    const common = ['--batch-size', '16', '--estimator', estimator];
    for (const s of ['a', 'b', 'c']) {
      const r = await cli('stats', fix('tiny_op13.onnx'), '--data', path.join(dir, `${s}.npy`), ...common, '--stats-out', path.join(dir, `${s}.json`));
      expect(r.code).toBe(0);
    }
    const merged = path.join(dir, 'merged.onnx');
    const m = await cli('merge', ...['a', 'b', 'c'].map((s) => path.join(dir, `${s}.json`)), '--model', fix('tiny_op13.onnx'), '--out', merged, '--json');
    expect(m.code).toBe(0);
    expect(JSON.parse(m.stdout)).toMatchObject({ estimator, samples: 50, batches: 4 });
    const whole = path.join(dir, 'whole.onnx');
    expect((await cli('recompute', fix('tiny_op13.onnx'), '--data', fix('calib_tiny.npy'), ...common, '--out', whole)).code).toBe(0);
    const a = bnStats(merged);
    const b = bnStats(whole);
    // Chan merges associate differently across shards: equal to float32 rounding.
    a.forEach((v, i) => expect(worstRel(v, b[i], 1e-6)).toBeLessThan(1e-6));
    // Nothing but BN statistics differs.
    expect(fs.statSync(merged).size).toBe(fs.statSync(whole).size);
  });

  test('merge refuses partial statistics of another model', async () => {
    const dir = tmpDir();
    expect((await cli('stats', fix('tiny_op9.onnx'), '--data', fix('calib_tiny.npy'), '--stats-out', path.join(dir, 'p.json'))).code).toBe(0);
    const r = await cli('merge', path.join(dir, 'p.json'), '--model', fix('tiny_const_op13.onnx'), '--out', path.join(dir, 'o.onnx'));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/p\.json: computed on a different model/);
    expect(fs.existsSync(path.join(dir, 'o.onnx'))).toBe(false);
  });
});

describe('fold', () => {
  test.each(['tiny_op13.onnx', 'tiny_const_op13.onnx', 'mlp_op13.onnx'])('%s: outputs equal the unfolded model within float32 tolerance', async (name) => {
    const dir = tmpDir();
    const out = path.join(dir, 'folded.onnx');
    const r = await cli('fold', fix(name), '--out', out, '--json');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.folded).toBe(name.startsWith('mlp') ? 1 : 3); // the MLP's first BN reads the graph input: left
    const data = fix(name.startsWith('mlp') ? 'calib_mlp.npy' : 'calib_tiny.npy');
    const n = name.startsWith('mlp') ? 40 : 50;
    const before = await runModel(fix(name), data, n, false);
    const after = await runModel(out, data, n, false);
    expect(worstRel(after, before, 0.1)).toBeLessThan(1e-5);
    const m = parseModel(fs.readFileSync(out));
    expect(m.nodes.filter((x) => x.opType === 'BatchNormalization')).toHaveLength((name.startsWith('mlp') ? 2 : 3) - j.folded);
  });
});

describe('fold: other layer forms', () => {
  test.each([
    ['zoo_op13.onnx', 'calib_tiny.npy', 2, [3, 3, 8, 8]], // ConvTranspose (groups 1 and 2); a residual BN is left
    ['gemm_op13.onnx', null, 2, [7, 5]], // Gemm with transB = 0, alpha, beta and C; Gemm without C
  ] as const)('%s', async (name, data, expectFolded, shape) => {
    const dir = tmpDir();
    const out = path.join(dir, 'f.onnx');
    const r = await cli('fold', fix(name), '--out', out, '--json');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).folded).toBe(expectFolded);
    const input = data ? fix(data) : path.join(dir, 'x.npy');
    if (!data) {
      const x = Float32Array.from({ length: 35 }, (_, i) => Math.sin(i * 1.3) * 2);
      const header = "{'descr': '<f4', 'fortran_order': False, 'shape': (7, 5), }".padEnd(117) + '\n';
      const head = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, header.length, 0]);
      fs.writeFileSync(input, Buffer.concat([head, Buffer.from(header, 'latin1'), Buffer.from(x.buffer)]));
    }
    const n = shape[0];
    const before = await runModel(fix(name), input, n, false);
    const after = await runModel(out, input, n, false);
    expect(after.length).toBe(before.length);
    expect(worstRel(after, before, 0.1)).toBeLessThan(1e-5);
  });
});

describe('inspect', () => {
  test('lists BN nodes with channels, eps, momentum and where parameters live', async () => {
    const r = await cli('inspect', fix('tiny_const_op13.onnx'), '--json');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.batchNorms.map((b: { channels: number }) => b.channels)).toEqual([8, 16, 32]);
    expect(j.batchNorms[0]).toMatchObject({ storage: 'constant via Identity', trainingMode: false });
    expect(j.batchNorms[0].momentum).toBeCloseTo(0.9, 6);
    const text = await cli('inspect', fix('folded_op13.onnx'));
    expect(text.stdout).toMatch(/BN looks folded into Conv/);
  });
});

describe('errors', () => {
  const dir = tmpDir();
  const out = path.join(dir, 'out.onnx');

  async function expectError(args: string[], code: number, pattern: RegExp): Promise<void> {
    const r = await cli(...args);
    expect(r.stderr).toMatch(pattern);
    expect(r.stderr.trim().split('\n')).toHaveLength(code === 1 ? 2 : 1); // one line (+ the --debug hint for internal errors)
    expect(r.code).toBe(code);
    // Nothing written, not even a temporary file.
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  }

  test('shape mismatch names the data file and the expected shape', () => expectError(
    ['recompute', fix('tiny_op13.onnx'), '--data', fix('calib_mlp.npy'), '--out', out], 2,
    /calib_mlp\.npy: samples have shape \[12\], but input 'input' of .*tiny_op13\.onnx expects \[3, 8, 8\]/));

  test('non-finite values name the sample', async () => {
    const buf = Buffer.from(fs.readFileSync(fix('calib_tiny.npy')));
    buf.writeFloatLE(NaN, 128 + 4 * (37 * 192 + 5));
    fs.writeFileSync(path.join(dir, 'nan.npy'), buf);
    await expectError(['recompute', fix('tiny_op13.onnx'), '--data', path.join(dir, 'nan.npy'), '--out', out], 2, /nan\.npy: sample 37 has a non-finite value \(NaN\)/);
  });

  test('truncated model', async () => {
    fs.writeFileSync(path.join(dir, 'cut.onnx'), fs.readFileSync(fix('tiny_op13.onnx')).subarray(0, 5000));
    await expectError(['recompute', path.join(dir, 'cut.onnx'), '--data', fix('calib_tiny.npy'), '--out', out], 2, /cut\.onnx: not a readable ONNX model .*truncated/);
  });

  test('not a model at all', () => expectError(['inspect', fix('calib_tiny.npy')], 2, /calib_tiny\.npy: not a readable ONNX model|not an ONNX model/));

  test('truncated data', async () => {
    fs.writeFileSync(path.join(dir, 'cut.npy'), fs.readFileSync(fix('calib_tiny.npy')).subarray(0, 20000));
    await expectError(['recompute', fix('tiny_op13.onnx'), '--data', path.join(dir, 'cut.npy'), '--out', out], 2, /cut\.npy: truncated: the header promises 50 samples but the file holds 25/);
  });

  test('BN inputs that depend on another model input', () => expectError(
    ['recompute', fix('mlp_2in_dep_op13.onnx'), '--input', 'x', '--data', fix('calib_mlp.npy'), '--out', out], 2,
    /the BatchNormalization inputs depend on graph input\(s\) 'z' besides 'x'/));

  test('unknown input name', () => expectError(['recompute', fix('tiny_op13.onnx'), '--data', fix('calib_tiny.npy'), '--input', 'x', '--out', out], 2,
    /no input named 'x'; the model's inputs are 'input'/));

  test('empty data', async () => {
    sliceNpy(fix('calib_tiny.npy'), 0, 0, path.join(dir, 'empty.npy'));
    await expectError(['recompute', fix('tiny_op13.onnx'), '--data', path.join(dir, 'empty.npy'), '--out', out], 2, /empty\.npy: empty data \(0 samples\)/);
  });

  test('missing data file, bad option values, unknown options', async () => {
    await expectError(['recompute', fix('tiny_op13.onnx'), '--data', path.join(dir, 'none.npy'), '--out', out], 2, /none\.npy: cannot open \(ENOENT\)/);
    await expectError(['recompute', fix('tiny_op13.onnx'), '--data', fix('calib_tiny.npy'), '--batch-size', '0', '--out', out], 2, /--batch-size: expected an integer ≥ 1, got '0'/);
    await expectError(['recompute', fix('tiny_op13.onnx'), '--data', fix('calib_tiny.npy'), '--estimator', 'ema', '--out', out], 2, /--estimator: expected 'pooled' or 'batch-average'/);
    await expectError(['recompute', fix('tiny_op13.onnx'), '--dat', fix('calib_tiny.npy')], 2, /Unknown option '--dat'/);
    await expectError(['frobnicate'], 2, /unknown command 'frobnicate'/);
  });

  test('an output folder that does not exist: exit 2, nothing written', async () => {
    const r = await cli('recompute', fix('mlp_op13.onnx'), '--data', fix('calib_mlp.npy'), '--out', path.join(dir, 'no', 'such', 'o.onnx'));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/o\.onnx: cannot write \(ENOENT\)/);
  });

  test('the input model is never overwritten', async () => {
    const model = path.join(dir, 'm.onnx');
    fs.copyFileSync(fix('mlp_op13.onnx'), model);
    const r = await cli('recompute', model, '--data', fix('calib_mlp.npy'), '--out', model);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/refusing to overwrite the input model/);
    expect(fs.readFileSync(model).equals(fs.readFileSync(fix('mlp_op13.onnx')))).toBe(true);
  });

  test('--debug adds a stack trace', async () => {
    const r = await cli('recompute', fix('tiny_op13.onnx'), '--data', fix('calib_mlp.npy'), '--out', out, '--debug');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/\n\s+at /);
  });

  test('bin/rebatch.js: exit codes and one-line messages from a real process', () => {
    const bin = path.join(__dirname, '..', 'bin', 'rebatch.js');
    const ok = spawnSync(process.execPath, [bin, 'inspect', fix('mlp_op13.onnx')], { encoding: 'utf8' });
    expect(ok.status).toBe(0);
    expect(ok.stdout).toMatch(/2 BatchNormalization node\(s\)/);
    const bad = spawnSync(process.execPath, [bin, 'recompute', fix('folded_op13.onnx'), '--data', fix('calib_tiny.npy')], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(execFileSync(process.execPath, [bin, '--help'], { encoding: 'utf8' })).toMatch(/rebatch recompute MODEL\.onnx/);
  });
});

describe('demo', () => {
  test('recomputed statistics beat the stale EMA ones, and target statistics the source ones', async () => {
    const r = await cli('demo', '--json', '--out-dir', tmpDir());
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.source.recomputedAccuracy).toBeGreaterThan(j.source.emaAccuracy + 0.05);
    expect(j.target.targetAccuracy).toBeGreaterThan(j.target.sourceRecomputedAccuracy + 0.3);
  });
});

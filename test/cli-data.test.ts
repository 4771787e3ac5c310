/** @jest-environment ./test/ort-environment.js */
// The .npy / .npz readers on files numpy wrote (fixtures/onnx/fmt_*): every
// variant reads as the same float32 C-order samples, batch by batch.
import * as fs from 'fs';
import * as path from 'path';
import { openData, readAll } from '../lib/data/open';
import { cli, fix, reference, tmpDir, worstRel } from './cli-helpers';

const expected = Float32Array.from({ length: 72 }, (_, i) => i * 0.5 - 7);

describe('data readers', () => {
  test.each([
    ['fmt_c.npy', null], ['fmt_f.npy', null], ['fmt_be.npy', null], ['fmt_f64.npy', 'float64 data converted to float32'],
    ['fmt.npz:x', null], ['fmt_z.npz', null],
  ])('%s reads as the C-order float32 array', async (spec, notice) => {
    const r = await openData(fix(spec));
    try {
      expect(r.count).toBe(6);
      expect(r.sampleShape).toEqual([3, 2, 2]);
      expect(r.notice).toBe(notice);
      // Uneven batches, as a pass reads them.
      const parts = [await r.read(4), await r.read(4), await r.read(4)];
      expect(parts.map((p) => p.length)).toEqual([48, 24, 0]);
      expect(Array.from(new Float32Array([...parts[0], ...parts[1]]))).toEqual(Array.from(expected));
    } finally {
      await r.close();
    }
  });

  test('npz with several arrays: KEY picks one; no KEY is an error listing them', async () => {
    expect(Array.from((await readAll(fix('fmt.npz:y'))).data)).toEqual(Array.from(expected, (v) => v * 2));
    await expect(openData(fix('fmt.npz'))).rejects.toThrow(/holds 2 arrays \(x, y\); name one as .*fmt\.npz:KEY/);
    await expect(openData(fix('fmt.npz:z'))).rejects.toThrow(/no array 'z'; it holds x, y/);
  });

  test('a truncated .npy is an error naming the file', async () => {
    const dir = tmpDir();
    const file = path.join(dir, 'cut.npy');
    fs.writeFileSync(file, fs.readFileSync(fix('fmt_c.npy')).subarray(0, 200));
    await expect(openData(file)).rejects.toThrow(/cut\.npy: truncated: the header promises 6 samples but the file holds 1/);
  });

  test.each([
    ['calib_mlp_f8_fortran_be.npy', 'big-endian float64, Fortran order'],
    ['calib_mlp_z.npz:calib', 'deflated .npz'],
  ])('recompute from %s (%s) matches PyTorch', async (spec) => {
    const dir = tmpDir();
    const stats = path.join(dir, 's.json');
    const r = await cli('recompute', fix('mlp_op13.onnx'), '--data', fix(spec), '--batch-size', '16', '--out', path.join(dir, 'o.onnx'), '--stats-out', stats);
    expect(r.code).toBe(0);
    const s = JSON.parse(fs.readFileSync(stats, 'utf8'));
    s.layers.forEach((l: { new: { mean: number[]; var: number[] } }, k: number) => {
      expect(worstRel(l.new.mean, reference.mlp.bn[k].pooled.mean)).toBeLessThan(1e-4);
      expect(worstRel(l.new.var, reference.mlp.bn[k].pooled.var)).toBeLessThan(1e-4);
    });
  });
});

// State with PyTorch's names: a safetensors file written on the PyTorch side
// (test/fixtures/bn_state.safetensors, by make_layer_fixtures.py) loads into a
// BatchNorm and gives PyTorch's eval output; files rebatch writes are checked
// with an independent header parser here (and loaded into torch.nn.BatchNorm2d
// with strict=True by the fixture script). Tolerance for y as layer-fixtures.ts.
import * as fs from 'fs';
import * as path from 'path';
import {
  BatchNorm, decodeSafetensors, encodeSafetensors, FrozenBatchNorm, GhostBatchNorm, loadSafetensors, loadStateDict,
  saveSafetensors, stateDict,
} from '../lib';
import { expectClose, randomFloats } from './helpers';
import { fixtures, TOL } from './layer-fixtures';

const st = fixtures.safetensors as { file: string; state: Record<string, number[] | number>; shapes: Record<string, number[]>; x: number[]; shape: number[]; y: number[] };
const fileBytes = new Uint8Array(fs.readFileSync(path.join(__dirname, 'fixtures', st.file)));

/** A safetensors header parser independent of lib/safetensors.ts. */
function parseHeader(bytes: Uint8Array): { length: number; header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }> } {
  const length = Number(Buffer.from(bytes).readBigUInt64LE(0));
  return { length, header: JSON.parse(Buffer.from(bytes.subarray(8, 8 + length)).toString('utf8')) };
}

describe('safetensors from PyTorch', () => {
  test('a BatchNorm2d state_dict written by PyTorch-side code loads, and eval gives PyTorch\'s output', () => {
    const bn = new BatchNorm(5);
    expect(loadSafetensors(bn, fileBytes)).toEqual({ missing: [], unexpected: [] });
    const want = Object.fromEntries(Object.entries(st.state).map(([k, v]) => [k, typeof v === 'number' ? v : v.map(Math.fround)]));
    expect(bn.state()).toEqual(want);
    expect(bn.numBatchesTracked).toBe(3);
    bn.eval();
    expectClose(bn.forward(Float32Array.from(st.x), st.shape), st.y, TOL.y[0], TOL.y[1], 'y');
  });

  test('decode gives PyTorch\'s dtypes and shapes; encoding them again reproduces the file byte for byte', () => {
    const { tensors, metadata } = decodeSafetensors(fileBytes);
    expect(metadata).toEqual({ format: 'pt' });
    expect(tensors.num_batches_tracked).toEqual({ dtype: 'I64', shape: [], data: BigInt64Array.of(3n) });
    for (const [name, shape] of Object.entries(st.shapes)) expect([name, tensors[name].shape]).toEqual([name, shape]);
    expect(tensors.running_var.data).toBeInstanceOf(Float32Array);
    expect(Buffer.from(encodeSafetensors(tensors, metadata!)).equals(Buffer.from(fileBytes))).toBe(true);
  });

  test('a FrozenBatchNorm loads a BatchNorm file (num_batches_tracked ignored)', () => {
    const f = new FrozenBatchNorm(5);
    loadSafetensors(f, fileBytes);
    const bn = new BatchNorm(5);
    loadSafetensors(bn, fileBytes);
    bn.eval();
    const x = Float32Array.from(st.x);
    expect(f.forward(x, st.shape)).toEqual(bn.forward(x, st.shape));
  });
});

describe('safetensors from rebatch (independent header parser)', () => {
  const model = { backbone: [new BatchNorm(3), new GhostBatchNorm(2, { virtualBatchSize: 2 })], head: new BatchNorm(4, { affine: false }) };
  model.backbone[0].forward(randomFloats(4 * 3 * 4, 1), [4, 3, 4]);
  model.backbone[0].forward(randomFloats(4 * 3 * 4, 2), [4, 3, 4]);
  const bytes = saveSafetensors(model);

  test('names, dtypes, shapes, offsets and padding follow PyTorch and the format', () => {
    const { length, header } = parseHeader(bytes);
    expect(length % 8).toBe(0);
    expect(header.__metadata__).toEqual({ format: 'pt' });
    delete (header as Record<string, unknown>).__metadata__;
    expect(Object.keys(header).sort()).toEqual([
      'backbone.0.bias', 'backbone.0.num_batches_tracked', 'backbone.0.running_mean', 'backbone.0.running_var', 'backbone.0.weight',
      'backbone.1.bias', 'backbone.1.num_batches_tracked', 'backbone.1.running_mean', 'backbone.1.running_var', 'backbone.1.weight',
      'head.num_batches_tracked', 'head.running_mean', 'head.running_var',
    ]);
    expect(header['backbone.0.num_batches_tracked']).toMatchObject({ dtype: 'I64', shape: [] });
    expect(header['backbone.0.running_var']).toMatchObject({ dtype: 'F32', shape: [3] });
    const spans = Object.values(header).map((h) => h.data_offsets).sort((a, b) => a[0] - b[0]);
    let at = 0;
    for (const [b, e] of spans) {
      expect(b).toBe(at);
      at = e;
    }
    expect(8 + length + at).toBe(bytes.length);
    const data = Buffer.from(bytes.subarray(8 + length));
    const nbt = header['backbone.0.num_batches_tracked'].data_offsets[0];
    expect(data.readBigInt64LE(nbt)).toBe(2n);
    const rv = header['backbone.0.running_var'].data_offsets[0];
    expect([0, 1, 2].map((i) => data.readFloatLE(rv + 4 * i))).toEqual(Array.from(model.backbone[0].runningVar!));
  });

  test('round trip through bytes and through stateDict JSON', () => {
    const copy = { backbone: [new BatchNorm(3), new GhostBatchNorm(2, { virtualBatchSize: 2 })], head: new BatchNorm(4, { affine: false }) };
    loadSafetensors(copy, bytes);
    expect(stateDict(copy)).toEqual(stateDict(model));
    const again = { backbone: [new BatchNorm(3), new BatchNorm(2)], head: new BatchNorm(4, { affine: false }) };
    loadStateDict(again, JSON.parse(JSON.stringify(stateDict(model))));
    expect(stateDict(again)).toEqual(stateDict(model));
  });

  test('strict and non-strict loading', () => {
    const state = stateDict(model) as Record<string, unknown>;
    expect(() => loadStateDict({ bn: new BatchNorm(3) }, state)).toThrow(/state: unexpected entries 'backbone.0.weight', 'backbone.0.bias'/);
    expect(() => loadStateDict({ ...model, extra: new BatchNorm(2) }, state)).toThrow(/no entries for the layer at 'extra'/);
    const extra = new BatchNorm(2);
    const r = loadStateDict({ backbone: [new BatchNorm(3)], extra }, state, { strict: false });
    expect(r.missing).toEqual(['extra']);
    expect(r.unexpected).toContain('head.running_mean');
    expect(() => loadStateDict({ backbone: [new BatchNorm(4)] }, state, { strict: false })).toThrow(/backbone.0: state.weight: expected 4 values, got 3/);
    expect(() => loadSafetensors({ backbone: [new BatchNorm(3), new BatchNorm(3)] }, bytes, { strict: false })).toThrow(/backbone.1.(weight|bias): shape \[2\] in the file, the layer has \[3\]/);
  });

  test('malformed files are RangeErrors that say what is wrong', () => {
    expect(() => decodeSafetensors(new Uint8Array(4))).toThrow(/at least 8 bytes/);
    const big = new Uint8Array(16);
    new DataView(big.buffer).setBigUint64(0, 100n, true);
    expect(() => decodeSafetensors(big)).toThrow(/header length 100 exceeds the file/);
    const make = (header: object, dataBytes: number) => {
      const h = Buffer.from(JSON.stringify(header));
      const out = new Uint8Array(8 + h.length + dataBytes);
      new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
      out.set(h, 8);
      return out;
    };
    expect(() => decodeSafetensors(make({ a: { dtype: 'BF16', shape: [1], data_offsets: [0, 2] } }, 2))).toThrow(/a: dtype "BF16" is not supported/);
    expect(() => decodeSafetensors(make({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, 4))).toThrow(/a: 4 bytes of data for shape \[2\] of F32, expected 8/);
    expect(() => decodeSafetensors(make({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 8] } }, 4))).toThrow(/a: invalid data_offsets/);
    expect(() => decodeSafetensors(make({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [2, 6] } }, 8))).toThrow(/data overlaps/);
    expect(() => encodeSafetensors({ a: { dtype: 'F32', shape: [2], data: new Float32Array(3) } })).toThrow(/tensors.a: shape \[2\] has 2 elements, data has 3/);
    expect(() => encodeSafetensors({ a: { dtype: 'F32', shape: [1], data: new Float64Array(1) } })).toThrow(/tensors.a.data: expected a Float32Array for dtype F32/);
  });
});

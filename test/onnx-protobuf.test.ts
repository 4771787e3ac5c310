/** @jest-environment ./test/ort-environment.js */
// The protobuf reader and splicing writer: unchanged models round-trip byte for
// byte, and edits change only what they name (with correct length prefixes).
import * as fs from 'fs';
import {
  applyEdit, encodeVarint, lenField, MessageEdit, parseFields, readInt64, readVarint, varintField,
} from '../lib/onnx/protobuf';
import { F, parseModel, readModel, readTensorValues } from '../lib/onnx/model';
import { updateTensors } from '../lib/onnx/update';
import { findBatchNorms } from '../lib/onnx/batchnorm';
import { halfToNumber, numberToHalf } from '../lib/onnx/float16';
import { fix } from './cli-helpers';

const MODELS = ['tiny_op9.onnx', 'tiny_op13.onnx', 'tiny_op17.onnx', 'tiny_const_op13.onnx', 'tiny_ext_op13.onnx', 'mlp_op13.onnx', 'folded_op13.onnx', '../../../examples/digits/model.onnx'];

describe('protobuf', () => {
  test('varints round-trip, including negative int64 and 2^53', () => {
    for (const v of [0, 1, 127, 128, 300, 2 ** 31, 2 ** 53 - 1]) {
      const b = encodeVarint(v);
      expect(readVarint(b, 0, b.length)).toEqual([v, b.length]);
    }
    const neg = encodeVarint(-1);
    expect(neg.length).toBe(10);
    expect(readInt64(neg, 0, neg.length)[0]).toBe(-1n);
  });

  test('truncated input is an error, not a silent short read', () => {
    const b = lenField(1, 'hello');
    expect(() => parseFields(b.subarray(0, b.length - 1))).toThrow(/runs past the end/);
    expect(() => parseFields(Uint8Array.from([0x80]))).toThrow(/truncated varint/);
  });

  test.each(MODELS)('%s: parse + write with no edit gives the same bytes', (name) => {
    const bytes = fs.readFileSync(fix(name));
    const model = parseModel(bytes, name);
    expect(Buffer.from(applyEdit(model.bytes, new MessageEdit())).equals(bytes)).toBe(true);
    // An edit that descends into every message but changes nothing also keeps the bytes.
    const deep = new MessageEdit();
    model.graphFields.forEach((f, i) => { if (f.num === F.graph.initializer || f.num === F.graph.node) deep.child(model.graphIndex).child(i); });
    expect(Buffer.from(applyEdit(model.bytes, deep)).equals(bytes)).toBe(true);
  });

  test('a nested edit that changes a length re-prefixes the enclosing messages', () => {
    const inner = varintField(1, 5);
    const msg = lenField(2, lenField(3, inner));
    const edit = new MessageEdit();
    edit.child(0).child(0).replace.set(0, varintField(1, 2 ** 40)); // longer varint
    const out = applyEdit(msg, edit);
    const outer = parseFields(out);
    const mid = parseFields(out, outer[0].valueStart, outer[0].end);
    const leaf = parseFields(out, mid[0].valueStart, mid[0].end);
    expect(readVarint(out, leaf[0].valueStart, leaf[0].end)[0]).toBe(2 ** 40);
    expect(outer[0].end).toBe(out.length);
  });

  test('float_data tensors (Constant nodes) are rewritten and read back', () => {
    const model = readModel(fix('tiny_const_op13.onnx'));
    const bns = findBatchNorms(model);
    const values = Float64Array.from({ length: bns[0].channels }, (_, i) => i * 0.25 - 1);
    const bytes = updateTensors(model, [{ tensor: bns[0].mean.tensor, values }]);
    const again = parseModel(bytes);
    const bn = findBatchNorms(again)[0];
    expect(Array.from(readTensorValues(again, bn.mean.tensor))).toEqual(Array.from(values));
    expect(Array.from(readTensorValues(again, bn.variance.tensor))).toEqual(Array.from(readTensorValues(model, bns[0].variance.tensor)));
  });

  test('float16 conversion rounds to nearest even and keeps specials', () => {
    expect(numberToHalf(1)).toBe(0x3c00);
    expect(numberToHalf(65504)).toBe(0x7bff);
    expect(numberToHalf(65520)).toBe(0x7c00); // rounds up to infinity
    expect(numberToHalf(2 ** -24)).toBe(1);
    expect(numberToHalf(1 + 2 ** -11)).toBe(0x3c00); // tie to even
    expect(numberToHalf(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(halfToNumber(0xc000)).toBe(-2);
    expect(Number.isNaN(halfToNumber(numberToHalf(NaN)))).toBe(true);
    for (let h = 0; h < 0x7c00; h += 7) expect(numberToHalf(halfToNumber(h))).toBe(h);
  });
});

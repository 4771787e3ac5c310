// Encoders for the few ONNX messages rebatch creates: nodes, attributes,
// tensors and graph outputs. Only new messages are encoded; existing ones are
// always copied from the original bytes.
import { concat, floatField, lenField, packedInt64Field, varintField } from './protobuf';
import { DataType, F } from './model';
import { numberToHalf } from './float16';

/** ONNX AttributeProto.AttributeType values. */
const AttrType = { FLOAT: 1, INT: 2, TENSOR: 4, INTS: 7 } as const;

/** An attribute of a new node. */
export type AttrValue =
  | { kind: 'int'; value: number }
  | { kind: 'float'; value: number }
  | { kind: 'ints'; value: number[] }
  | { kind: 'tensor'; value: Uint8Array };

/** Encodes an AttributeProto. */
export function encodeAttribute(name: string, a: AttrValue): Uint8Array {
  const parts = [lenField(F.attr.name, name)];
  switch (a.kind) {
    case 'int': parts.push(varintField(F.attr.i, a.value), varintField(F.attr.type, AttrType.INT)); break;
    case 'float': parts.push(floatField(F.attr.f, a.value), varintField(F.attr.type, AttrType.FLOAT)); break;
    case 'ints': parts.push(packedInt64Field(F.attr.ints, a.value), varintField(F.attr.type, AttrType.INTS)); break;
    case 'tensor': parts.push(lenField(F.attr.t, a.value), varintField(F.attr.type, AttrType.TENSOR)); break;
  }
  return concat(parts);
}

/** A new node, before encoding: what pruning and ordering need to know. */
export interface NewNode {
  opType: string;
  inputs: string[];
  outputs: string[];
  name?: string;
  attributes?: Record<string, AttrValue>;
}

/** Encodes a NodeProto (the payload, without the graph's field tag). */
export function encodeNode(n: NewNode): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const i of n.inputs) parts.push(lenField(F.node.input, i));
  for (const o of n.outputs) parts.push(lenField(F.node.output, o));
  if (n.name) parts.push(lenField(F.node.name, n.name));
  parts.push(lenField(F.node.opType, n.opType));
  for (const [name, a] of Object.entries(n.attributes ?? {})) parts.push(lenField(F.node.attribute, encodeAttribute(name, a)));
  return concat(parts);
}

/** The little-endian bytes of `values` stored as `dataType` (float32, float16, float64, int64, bfloat16). */
export function valuesToBytes(values: ArrayLike<number>, dataType: number): Uint8Array {
  const size = { [DataType.FLOAT]: 4, [DataType.FLOAT16]: 2, [DataType.DOUBLE]: 8, [DataType.INT64]: 8, [DataType.BFLOAT16]: 2 }[dataType];
  if (size === undefined) throw new RangeError(`cannot write values of data type ${dataType}`);
  const out = new Uint8Array(values.length * size);
  const view = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    switch (dataType) {
      case DataType.FLOAT: view.setFloat32(i * 4, v, true); break;
      case DataType.FLOAT16: view.setUint16(i * 2, numberToHalf(v), true); break;
      case DataType.DOUBLE: view.setFloat64(i * 8, v, true); break;
      case DataType.INT64: view.setBigInt64(i * 8, BigInt(v), true); break;
      default: view.setUint16(i * 2, bfloat16Bits(v), true); break;
    }
  }
  return out;
}

function bfloat16Bits(v: number): number {
  const b = new DataView(new ArrayBuffer(4));
  b.setFloat32(0, v, true);
  const x = b.getUint32(0, true);
  if (Number.isNaN(v)) return 0x7fc0;
  // Round to nearest even on the dropped 16 bits.
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Encodes a TensorProto with raw_data. */
export function encodeTensor(name: string, dataType: number, dims: number[], values: ArrayLike<number>): Uint8Array {
  return concat([
    packedInt64Field(F.tensor.dims, dims),
    varintField(F.tensor.dataType, dataType),
    lenField(F.tensor.name, name),
    lenField(F.tensor.rawData, valuesToBytes(values, dataType)),
  ]);
}

/**
 * Encodes a ValueInfoProto naming a tensor of the given element type; with
 * `shape`, each dim a size or a symbolic name (null: unknown); without, the shape is left unknown.
 */
export function encodeValueInfo(name: string, elemType: number, shape?: (number | string | null)[]): Uint8Array {
  const parts = [varintField(F.tensorType.elemType, elemType)];
  if (shape) {
    const dims = shape.map((d) => lenField(F.shape.dim, d === null ? new Uint8Array(0)
      : typeof d === 'number' ? varintField(F.dim.value, d) : lenField(F.dim.param, d)));
    parts.push(lenField(F.tensorType.shape, concat(dims)));
  }
  return concat([lenField(F.valueInfo.name, name), lenField(F.valueInfo.type, lenField(F.typeProto.tensorType, concat(parts)))]);
}

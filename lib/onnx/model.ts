// An ONNX model as the CLI needs it: the graph's nodes, initializers, inputs
// and outputs, each with the path of field indices that locates it in the
// original bytes, so edits can be spliced (see protobuf.ts). Only the fields
// rebatch uses are decoded; everything else stays as bytes.
import * as fs from 'fs';
import * as path from 'path';
import {
  Field, fieldFloat, fieldString, fieldVarint, parseFields, ProtobufError, repeatedInt64, Wire,
} from './protobuf';
import { halfToNumber } from './float16';

/** ONNX TensorProto.DataType values rebatch reads or writes. */
export const DataType = { FLOAT: 1, INT32: 6, INT64: 7, FLOAT16: 10, DOUBLE: 11, BFLOAT16: 16 } as const;

/** Field numbers of the ONNX messages, from onnx.proto3. */
export const F = {
  model: { irVersion: 1, opsetImport: 8, graph: 7 },
  opset: { domain: 1, version: 2 },
  graph: { node: 1, name: 2, initializer: 5, input: 11, output: 12, valueInfo: 13 },
  node: { input: 1, output: 2, name: 3, opType: 4, attribute: 5, domain: 7 },
  attr: { name: 1, f: 2, i: 3, s: 4, t: 5, floats: 7, ints: 8, type: 20 },
  tensor: {
    dims: 1, dataType: 2, floatData: 4, int32Data: 5, int64Data: 7, name: 8, rawData: 9, doubleData: 10,
    externalData: 13, dataLocation: 14,
  },
  valueInfo: { name: 1, type: 2 },
  typeProto: { tensorType: 1 },
  tensorType: { elemType: 1, shape: 2 },
  shape: { dim: 1 },
  dim: { value: 1, param: 2 },
  entry: { key: 1, value: 2 },
} as const;

/** Thrown for a model rebatch cannot read; the message names the file and what is wrong. */
export class ModelError extends Error {}

/** A TensorProto somewhere in the model. */
export interface TensorRef {
  name: string;
  dims: number[];
  dataType: number;
  /** Field indices from the ModelProto down to this TensorProto. */
  path: number[];
  /** The TensorProto's fields. */
  fields: Field[];
  /** Set when the data lives in an external file (data_location = EXTERNAL). */
  external?: { location: string; offset: number; length: number | null };
}

/** An attribute of a node, with its fields undecoded. */
export interface AttributeRef {
  name: string;
  field: Field;
  /** Index of the attribute field within its node. */
  index: number;
  fields: Field[];
}

/** A node of the main graph. */
export interface NodeRef {
  /** Index of this node among the graph's fields (for edits). */
  fieldIndex: number;
  /** Position in the node list (topological order in valid models). */
  position: number;
  name: string;
  opType: string;
  domain: string;
  inputs: string[];
  outputs: string[];
  attributes: Map<string, AttributeRef>;
}

/** A graph input or output: name, element type and shape. */
export interface ValueRef {
  name: string;
  fieldIndex: number;
  /** Element type (DataType), 0 when not given. */
  elemType: number;
  /** Dims: a number, a symbolic name, or null when unknown; null when the shape is not given. */
  shape: (number | string | null)[] | null;
}

/** A parsed model; `bytes` is the file as read. */
export interface OnnxModel {
  file: string;
  bytes: Uint8Array;
  irVersion: number;
  /** Opset versions by domain ('' is the default ONNX domain). */
  opsets: Map<string, number>;
  /** Field index of the graph within the model. */
  graphIndex: number;
  graphFields: Field[];
  nodes: NodeRef[];
  initializers: Map<string, TensorRef>;
  /** Graph inputs that are not initializers: what a caller feeds. */
  inputs: ValueRef[];
  outputs: ValueRef[];
  /** Index of each opset_import field in the model, by domain. */
  opsetFieldIndex: Map<string, number>;
}

/** The default-domain opset version. */
export function defaultOpset(model: OnnxModel): number {
  return model.opsets.get('') ?? model.opsets.get('ai.onnx') ?? 0;
}

/** Reads and parses a model file. Errors name the file and what was expected. */
export function readModel(file: string): OnnxModel {
  let bytes: Uint8Array;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    throw new ModelError(`${file}: cannot read the model (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return parseModel(bytes, file);
}

/** Parses ModelProto bytes; `file` is used in messages and to find external data. */
export function parseModel(bytes: Uint8Array, file = '<model>'): OnnxModel {
  try {
    return parseModelUnchecked(bytes, file);
  } catch (e) {
    if (e instanceof ProtobufError) {
      throw new ModelError(`${file}: not a readable ONNX model (${e.message}); is the file truncated or not an .onnx file?`);
    }
    throw e;
  }
}

function parseModelUnchecked(bytes: Uint8Array, file: string): OnnxModel {
  const top = parseFields(bytes);
  let irVersion = 0;
  const opsets = new Map<string, number>();
  const opsetFieldIndex = new Map<string, number>();
  let graphIndex = -1;
  top.forEach((f, i) => {
    if (f.num === F.model.irVersion && f.wire === Wire.Varint) irVersion = fieldVarint(bytes, f);
    else if (f.num === F.model.opsetImport && f.wire === Wire.Len) {
      let domain = '';
      let version = 0;
      for (const g of parseFields(bytes, f.valueStart, f.end)) {
        if (g.num === F.opset.domain) domain = fieldString(bytes, g);
        else if (g.num === F.opset.version) version = fieldVarint(bytes, g);
      }
      opsets.set(domain, version);
      opsetFieldIndex.set(domain, i);
    } else if (f.num === F.model.graph && f.wire === Wire.Len) graphIndex = i;
  });
  if (graphIndex < 0 || irVersion === 0) {
    throw new ModelError(`${file}: not an ONNX model (no ${graphIndex < 0 ? 'graph' : 'ir_version'} field); is it an .onnx file?`);
  }
  const g = top[graphIndex];
  const graphFields = parseFields(bytes, g.valueStart, g.end);
  const nodes: NodeRef[] = [];
  const initializers = new Map<string, TensorRef>();
  const rawInputs: ValueRef[] = [];
  const outputs: ValueRef[] = [];
  graphFields.forEach((f, i) => {
    if (f.wire !== Wire.Len) return;
    if (f.num === F.graph.node) nodes.push(parseNode(bytes, f, i, nodes.length));
    else if (f.num === F.graph.initializer) {
      const t = parseTensor(bytes, f, [graphIndex, i]);
      initializers.set(t.name, t);
    } else if (f.num === F.graph.input) rawInputs.push(parseValueInfo(bytes, f, i));
    else if (f.num === F.graph.output) outputs.push(parseValueInfo(bytes, f, i));
  });
  // Before IR 4 initializers were also listed as inputs; those are not fed.
  const inputs = rawInputs.filter((v) => !initializers.has(v.name));
  return { file, bytes, irVersion, opsets, graphIndex, graphFields, nodes, initializers, inputs, outputs, opsetFieldIndex };
}

function parseNode(buf: Uint8Array, f: Field, fieldIndex: number, position: number): NodeRef {
  const node: NodeRef = { fieldIndex, position, name: '', opType: '', domain: '', inputs: [], outputs: [], attributes: new Map() };
  parseFields(buf, f.valueStart, f.end).forEach((a, i) => {
    switch (a.num) {
      case F.node.input: node.inputs.push(fieldString(buf, a)); break;
      case F.node.output: node.outputs.push(fieldString(buf, a)); break;
      case F.node.name: node.name = fieldString(buf, a); break;
      case F.node.opType: node.opType = fieldString(buf, a); break;
      case F.node.domain: node.domain = fieldString(buf, a); break;
      case F.node.attribute: {
        const fields = parseFields(buf, a.valueStart, a.end);
        const nameField = fields.find((x) => x.num === F.attr.name);
        const name = nameField ? fieldString(buf, nameField) : '';
        node.attributes.set(name, { name, field: a, index: i, fields });
        break;
      }
      default: break;
    }
  });
  return node;
}

function parseValueInfo(buf: Uint8Array, f: Field, fieldIndex: number): ValueRef {
  const v: ValueRef = { name: '', fieldIndex, elemType: 0, shape: null };
  for (const a of parseFields(buf, f.valueStart, f.end)) {
    if (a.num === F.valueInfo.name) v.name = fieldString(buf, a);
    else if (a.num === F.valueInfo.type) {
      for (const t of parseFields(buf, a.valueStart, a.end)) {
        if (t.num !== F.typeProto.tensorType) continue;
        for (const tt of parseFields(buf, t.valueStart, t.end)) {
          if (tt.num === F.tensorType.elemType) v.elemType = fieldVarint(buf, tt);
          else if (tt.num === F.tensorType.shape) {
            v.shape = [];
            for (const d of parseFields(buf, tt.valueStart, tt.end)) {
              if (d.num !== F.shape.dim) continue;
              let dim: number | string | null = null;
              for (const x of parseFields(buf, d.valueStart, d.end)) {
                if (x.num === F.dim.value) dim = fieldVarint(buf, x);
                else if (x.num === F.dim.param) dim = fieldString(buf, x);
              }
              v.shape.push(dim);
            }
          }
        }
      }
    }
  }
  return v;
}

/** Parses the TensorProto in field f; `path` locates it from the model root. */
export function parseTensor(buf: Uint8Array, f: Field, path: number[]): TensorRef {
  const fields = parseFields(buf, f.valueStart, f.end);
  const t: TensorRef = { name: '', dims: [], dataType: 0, path, fields };
  let external = false;
  const entries = new Map<string, string>();
  for (const a of fields) {
    if (a.num === F.tensor.name) t.name = fieldString(buf, a);
    else if (a.num === F.tensor.dataType) t.dataType = fieldVarint(buf, a);
    else if (a.num === F.tensor.dataLocation) external = fieldVarint(buf, a) === 1;
    else if (a.num === F.tensor.externalData) {
      let key = '';
      let value = '';
      for (const e of parseFields(buf, a.valueStart, a.end)) {
        if (e.num === F.entry.key) key = fieldString(buf, e);
        else if (e.num === F.entry.value) value = fieldString(buf, e);
      }
      entries.set(key, value);
    }
  }
  t.dims = repeatedInt64(buf, fields.filter((a) => a.num === F.tensor.dims));
  if (external) {
    const location = entries.get('location');
    if (!location) throw new ProtobufError(`tensor '${t.name}' is external but has no location`);
    t.external = {
      location,
      offset: Number(entries.get('offset') ?? 0),
      length: entries.has('length') ? Number(entries.get('length')) : null,
    };
  }
  return t;
}

/** The number of elements of a tensor. */
export function tensorSize(t: TensorRef): number {
  return t.dims.reduce((a, b) => a * b, 1);
}

const TYPE_NAMES: Record<number, string> = { 1: 'float32', 6: 'int32', 7: 'int64', 10: 'float16', 11: 'float64', 16: 'bfloat16' };

/** A readable name for a DataType value. */
export function typeName(dataType: number): string {
  return TYPE_NAMES[dataType] ?? `data type ${dataType}`;
}

/** Bytes per element of each fixed-size DataType. */
const ITEM_BYTES: Record<number, number> = { 1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2 };

/** The bytes of an external tensor, as stored (little-endian), read from next to the model file. */
export function externalTensorBytes(model: OnnxModel, t: TensorRef): Uint8Array {
  return externalBytes(model, t, tensorSize(t) * (ITEM_BYTES[t.dataType] ?? 1));
}

/** The bytes of a tensor's external data, read from next to the model file. */
function externalBytes(model: OnnxModel, t: TensorRef, byteLength: number): Uint8Array {
  const ext = t.external!;
  const file = path.resolve(path.dirname(model.file), ext.location);
  const length = ext.length ?? byteLength;
  const out = Buffer.alloc(length);
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    throw new ModelError(`${model.file}: tensor '${t.name}': cannot open its external data file ${file} (${(e as NodeJS.ErrnoException).code})`);
  }
  try {
    const n = fs.readSync(fd, out, 0, length, ext.offset);
    if (n !== length) throw new ModelError(`${model.file}: tensor '${t.name}': external data file ${file} is truncated (wanted ${length} bytes at offset ${ext.offset}, got ${n})`);
  } finally {
    fs.closeSync(fd);
  }
  return out;
}

/**
 * The values of a floating-point or integer tensor as float64, from whichever
 * field holds them (raw_data, float_data, int32_data for float16, double_data,
 * int64_data, or an external file).
 */
export function readTensorValues(model: OnnxModel, t: TensorRef): Float64Array {
  const buf = model.bytes;
  const n = tensorSize(t);
  const itemSize: Record<number, number> = { 1: 4, 6: 4, 7: 8, 10: 2, 11: 8, 16: 2 };
  const size = itemSize[t.dataType];
  if (size === undefined) throw new ModelError(`${model.file}: tensor '${t.name}' has type ${typeName(t.dataType)}; expected a float or integer tensor`);
  const raw = t.fields.find((f) => f.num === F.tensor.rawData);
  let bytes: Uint8Array | undefined;
  if (t.external) bytes = externalBytes(model, t, n * size);
  else if (raw) bytes = buf.subarray(raw.valueStart, raw.end);
  const out = new Float64Array(n);
  if (bytes) {
    if (bytes.length !== n * size) {
      throw new ModelError(`${model.file}: tensor '${t.name}' has ${bytes.length} bytes of data; expected ${n} × ${size}`);
    }
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < n; i++) {
      switch (t.dataType) {
        case DataType.FLOAT: out[i] = view.getFloat32(i * 4, true); break;
        case DataType.DOUBLE: out[i] = view.getFloat64(i * 8, true); break;
        case DataType.FLOAT16: out[i] = halfToNumber(view.getUint16(i * 2, true)); break;
        case DataType.BFLOAT16: out[i] = bf16ToNumber(view.getUint16(i * 2, true)); break;
        case DataType.INT32: out[i] = view.getInt32(i * 4, true); break;
        default: out[i] = Number(view.getBigInt64(i * 8, true)); break;
      }
    }
    return out;
  }
  let values: number[] = [];
  if (t.dataType === DataType.FLOAT) values = repeatedFloats(buf, t.fields.filter((f) => f.num === F.tensor.floatData));
  else if (t.dataType === DataType.DOUBLE) values = repeatedDoubles(buf, t.fields.filter((f) => f.num === F.tensor.doubleData));
  else if (t.dataType === DataType.INT64) values = repeatedInt64(buf, t.fields.filter((f) => f.num === F.tensor.int64Data));
  else {
    // float16, bfloat16 and int32 values are stored as int32 varints (16-bit patterns for the halves).
    const ints = repeatedInt64(buf, t.fields.filter((f) => f.num === F.tensor.int32Data));
    if (t.dataType === DataType.FLOAT16) values = ints.map((v) => halfToNumber(v & 0xffff));
    else if (t.dataType === DataType.BFLOAT16) values = ints.map((v) => bf16ToNumber(v & 0xffff));
    else values = ints;
  }
  if (values.length !== n) throw new ModelError(`${model.file}: tensor '${t.name}' has ${values.length} values; expected ${n} (dims [${t.dims.join(', ')}])`);
  out.set(values);
  return out;
}

function bf16ToNumber(bits: number): number {
  const b = new Uint8Array(4);
  const v = new DataView(b.buffer);
  v.setUint32(0, bits << 16, true);
  return v.getFloat32(0, true);
}

function repeatedFloats(buf: Uint8Array, fields: Field[]): number[] {
  const out: number[] = [];
  for (const f of fields) {
    if (f.wire === Wire.Fixed32) out.push(fieldFloat(buf, f));
    else {
      const view = new DataView(buf.buffer, buf.byteOffset + f.valueStart, f.end - f.valueStart);
      for (let p = 0; p + 4 <= view.byteLength; p += 4) out.push(view.getFloat32(p, true));
    }
  }
  return out;
}

function repeatedDoubles(buf: Uint8Array, fields: Field[]): number[] {
  const out: number[] = [];
  for (const f of fields) {
    const view = new DataView(buf.buffer, buf.byteOffset + f.valueStart, f.end - f.valueStart);
    for (let p = 0; p + 8 <= view.byteLength; p += 8) out.push(view.getFloat64(p, true));
  }
  return out;
}

/** Where a tensor named by a node input comes from. */
export interface TensorSource {
  tensor: TensorRef;
  /** 'initializer' or 'constant' (a Constant node's value attribute). */
  kind: 'initializer' | 'constant';
  /** Identity nodes passed on the way (PyTorch's PRESERVE export puts BN parameters behind them). */
  via: NodeRef[];
}

/** Maps each tensor name to the node producing it. */
export function producers(model: OnnxModel): Map<string, NodeRef> {
  const m = new Map<string, NodeRef>();
  for (const n of model.nodes) for (const o of n.outputs) if (o) m.set(o, n);
  return m;
}

/** Maps each tensor name to the nodes consuming it. */
export function consumers(model: OnnxModel): Map<string, NodeRef[]> {
  const m = new Map<string, NodeRef[]>();
  for (const n of model.nodes) {
    for (const i of n.inputs) {
      if (!i) continue;
      const list = m.get(i);
      if (list) list.push(n);
      else m.set(i, [n]);
    }
  }
  return m;
}

/**
 * Follows a tensor name through Identity nodes to the initializer or Constant
 * node that holds it; null when it is computed (or a graph input).
 */
export function resolveConstant(model: OnnxModel, name: string, producedBy = producers(model)): TensorSource | null {
  const via: NodeRef[] = [];
  for (let depth = 0; depth < 64; depth++) {
    const init = model.initializers.get(name);
    // A graph input of the same name overrides the initializer's value at run time; treat it as not constant.
    if (init && !model.inputs.some((v) => v.name === name)) return { tensor: init, kind: 'initializer', via };
    const node = producedBy.get(name);
    if (!node) return null;
    if (node.opType === 'Identity' && node.domain === '') {
      via.push(node);
      name = node.inputs[0];
      continue;
    }
    if (node.opType === 'Constant' && node.domain === '') {
      const attr = node.attributes.get('value');
      if (!attr) return null;
      const tf = attr.fields.find((f) => f.num === F.attr.t);
      if (!tf) return null;
      const path = [model.graphIndex, node.fieldIndex, attr.index, attr.fields.indexOf(tf)];
      const tensor = parseTensor(model.bytes, tf, path);
      if (!tensor.name) tensor.name = node.outputs[0];
      return { tensor, kind: 'constant', via };
    }
    return null;
  }
  return null;
}

/** An attribute's int value, or `fallback`. */
export function attrInt(model: OnnxModel, node: NodeRef, name: string, fallback: number): number {
  const a = node.attributes.get(name);
  const f = a?.fields.find((x) => x.num === F.attr.i);
  return f ? fieldVarint(model.bytes, f) : fallback;
}

/** An attribute's float value, or `fallback`. */
export function attrFloat(model: OnnxModel, node: NodeRef, name: string, fallback: number): number {
  const a = node.attributes.get(name);
  const f = a?.fields.find((x) => x.num === F.attr.f);
  return f ? fieldFloat(model.bytes, f) : fallback;
}

/** An attribute's ints value, or `fallback`. */
export function attrInts(model: OnnxModel, node: NodeRef, name: string, fallback: number[]): number[] {
  const a = node.attributes.get(name);
  if (!a) return fallback;
  return repeatedInt64(model.bytes, a.fields.filter((x) => x.num === F.attr.ints));
}

/** A readable name for a node: its name, else its op type and first output. */
export function nodeLabel(node: NodeRef): string {
  return node.name || `${node.opType}(${node.outputs[0] ?? '?'})`;
}

// The safetensors file format (huggingface/safetensors): an 8-byte
// little-endian header length, a JSON header {name: {dtype, shape,
// data_offsets: [begin, end]}, "__metadata__"?: {string: string}}, then the
// tensors' raw little-endian bytes. Enough of it to move state between
// rebatch and PyTorch: F32, F64, I64 and I32 tensors.
import { typeError } from './validate';

/** Element types rebatch reads and writes. */
export type SafetensorsDtype = 'F32' | 'F64' | 'I64' | 'I32';

export type SafetensorsData = Float32Array | Float64Array | BigInt64Array | Int32Array;

/** One tensor: dtype, shape (`[]` for a scalar) and its elements in row-major order. */
export interface SafeTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  data: SafetensorsData;
}

const TYPES: Record<SafetensorsDtype, { bytes: number; make: (buffer: ArrayBuffer) => SafetensorsData; ctor: Function }> = {
  F32: { bytes: 4, make: (b) => new Float32Array(b), ctor: Float32Array },
  F64: { bytes: 8, make: (b) => new Float64Array(b), ctor: Float64Array },
  I64: { bytes: 8, make: (b) => new BigInt64Array(b), ctor: BigInt64Array },
  I32: { bytes: 4, make: (b) => new Int32Array(b), ctor: Int32Array },
};

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function littleEndianBytes(data: SafetensorsData): Uint8Array {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (LITTLE_ENDIAN) return bytes;
  const out = new Uint8Array(bytes.length);
  const size = data.BYTES_PER_ELEMENT;
  for (let i = 0; i < bytes.length; i += size) for (let k = 0; k < size; k++) out[i + k] = bytes[i + size - 1 - k];
  return out;
}

function elements(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * Encodes tensors as a safetensors file (header padded with spaces to 8 bytes,
 * tensors in name order).
 * @example
 * const bytes = encodeSafetensors({ weight: { dtype: 'F32', shape: [3], data: Float32Array.of(1, 2, 3) } }, { format: 'pt' });
 * fs.writeFileSync('bn.safetensors', bytes);
 */
export function encodeSafetensors(tensors: Record<string, SafeTensor>, metadata?: Record<string, string>): Uint8Array {
  if (typeof tensors !== 'object' || tensors === null) throw typeError('tensors', 'an object of {dtype, shape, data}', tensors);
  const header: Record<string, unknown> = {};
  const blobs: Uint8Array[] = [];
  let offset = 0;
  for (const name of Object.keys(tensors).sort()) {
    if (name === '__metadata__') throw new RangeError("tensors: '__metadata__' is reserved for metadata");
    const t = tensors[name];
    const type = TYPES[t?.dtype];
    if (type === undefined) throw typeError(`tensors.${name}.dtype`, "'F32', 'F64', 'I64' or 'I32'", t?.dtype);
    if (!(t.data instanceof type.ctor)) throw typeError(`tensors.${name}.data`, `a ${type.ctor.name} for dtype ${t.dtype}`, t.data);
    if (!Array.isArray(t.shape) || t.shape.some((d) => !Number.isInteger(d) || d < 0)) throw typeError(`tensors.${name}.shape`, 'an array of non-negative integers', t.shape);
    if (elements(t.shape) !== t.data.length) {
      throw new RangeError(`tensors.${name}: shape [${t.shape.join(', ')}] has ${elements(t.shape)} elements, data has ${t.data.length}`);
    }
    const bytes = littleEndianBytes(t.data);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    blobs.push(bytes);
    offset += bytes.length;
  }
  if (metadata !== undefined) {
    if (typeof metadata !== 'object' || metadata === null || Object.values(metadata).some((v) => typeof v !== 'string')) {
      throw typeError('metadata', 'an object of strings', metadata);
    }
    header.__metadata__ = metadata;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const head = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + head.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let at = 8 + head.length;
  for (const b of blobs) {
    out.set(b, at);
    at += b.length;
  }
  return out;
}

/**
 * Decodes a safetensors file. Every tensor is copied into its own aligned typed
 * array. Throws a RangeError on a malformed file or an unsupported dtype.
 * @example
 * const { tensors, metadata } = decodeSafetensors(fs.readFileSync('bn.safetensors'));
 * tensors.running_mean.data; // Float32Array
 */
export function decodeSafetensors(bytes: Uint8Array): { tensors: Record<string, SafeTensor>; metadata: Record<string, string> | null } {
  if (!(bytes instanceof Uint8Array)) throw typeError('bytes', 'a Uint8Array or Buffer with a safetensors file', bytes);
  if (bytes.length < 8) throw new RangeError(`bytes: a safetensors file has at least 8 bytes, got ${bytes.length}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  if (headerLength > bytes.length - 8) throw new RangeError(`bytes: header length ${headerLength} exceeds the file (${bytes.length} bytes)`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLength)));
  } catch (e) {
    throw new RangeError(`bytes: the safetensors header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw new RangeError('bytes: the safetensors header is not a JSON object');
  const dataStart = 8 + headerLength;
  const dataLength = bytes.length - dataStart;
  let metadata: Record<string, string> | null = null;
  const tensors: Record<string, SafeTensor> = {};
  const ranges: Array<[number, number, string]> = [];
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = entry as Record<string, string>;
      continue;
    }
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const type = TYPES[e?.dtype as SafetensorsDtype];
    if (type === undefined) throw new RangeError(`${name}: dtype ${JSON.stringify(e?.dtype)} is not supported (F32, F64, I64, I32)`);
    const shape = e.shape;
    if (!Array.isArray(shape) || shape.some((d) => !Number.isInteger(d) || d < 0)) throw new RangeError(`${name}: invalid shape ${JSON.stringify(shape)}`);
    const offsets = e.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isInteger(o) && o >= 0) || offsets[0] > offsets[1] || offsets[1] > dataLength) {
      throw new RangeError(`${name}: invalid data_offsets ${JSON.stringify(offsets)} for ${dataLength} bytes of data`);
    }
    const [begin, end] = offsets as [number, number];
    if (end - begin !== elements(shape) * type.bytes) {
      throw new RangeError(`${name}: ${end - begin} bytes of data for shape [${shape.join(', ')}] of ${e.dtype as string}, expected ${elements(shape) * type.bytes}`);
    }
    const copy = bytes.slice(dataStart + begin, dataStart + end);
    if (!LITTLE_ENDIAN) copy.set(littleEndianBytes(type.make(copy.buffer)));
    tensors[name] = { dtype: e.dtype as SafetensorsDtype, shape: shape as number[], data: type.make(copy.buffer) };
    ranges.push([begin, end, name]);
  }
  ranges.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < ranges.length; i++) {
    if (ranges[i][0] < ranges[i - 1][1]) throw new RangeError(`${ranges[i][2]}: data overlaps ${ranges[i - 1][2]}`);
  }
  return { tensors, metadata };
}

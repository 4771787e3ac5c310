// NumPy .npy arrays, read a batch of samples at a time. The first axis is the
// sample axis. float32, and float64, float16 or integers (converted), either
// endianness, C or Fortran order.
import { DataError, FileRegion, StreamBytes } from './bytes';
import { halfToNumber } from '../onnx/float16';

/** What the header of a .npy says. */
export interface NpyHeader {
  /** Element type: float16/32/64 or an integer type; all are read as float32. */
  kind: NpyKind;
  littleEndian: boolean;
  fortranOrder: boolean;
  shape: number[];
  /** Offset of the data from the start of the .npy. */
  dataOffset: number;
}

/** A source of samples: `read(n)` returns the next n samples as float32 in C order. */
export interface SampleReader {
  /** The data's name, for messages. */
  label: string;
  /** Number of samples (the first axis). */
  count: number;
  /** Shape of one sample (the other axes). */
  sampleShape: number[];
  /** A note for the user (e.g. float64 converted to float32), or null. */
  notice: string | null;
  /** The next `n` samples (fewer at the end), C order, float32. */
  read(n: number): Promise<Float32Array>;
  close(): Promise<void>;
}

/** The element types read (converted to float32 where not float32). */
export type NpyKind = 'f2' | 'f4' | 'f8' | 'u1' | 'i1' | 'i4' | 'i8';
const ITEM_SIZE: Record<NpyKind, number> = { f2: 2, f4: 4, f8: 8, u1: 1, i1: 1, i4: 4, i8: 8 };

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

/**
 * Parses a .npy header from its first bytes (at least 10, and all of the header
 * when `prefix` is long enough). Returns null when more bytes are needed.
 */
export function parseNpyHeader(prefix: Uint8Array, label: string): NpyHeader | { needBytes: number } {
  if (prefix.length < 10 || MAGIC.some((b, i) => prefix[i] !== b)) {
    throw new DataError(`${label}: not a .npy file (no \\x93NUMPY magic)`);
  }
  const major = prefix[6];
  const view = new DataView(prefix.buffer, prefix.byteOffset, prefix.byteLength);
  let headerLen: number;
  let start: number;
  if (major === 1) {
    headerLen = view.getUint16(8, true);
    start = 10;
  } else if (major === 2 || major === 3) {
    if (prefix.length < 12) return { needBytes: 12 };
    headerLen = view.getUint32(8, true);
    start = 12;
  } else {
    throw new DataError(`${label}: .npy format version ${major} is not supported (1, 2 or 3 expected)`);
  }
  if (prefix.length < start + headerLen) return { needBytes: start + headerLen };
  const text = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(prefix.subarray(start, start + headerLen));
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(text)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(text)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(text)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw new DataError(`${label}: unreadable .npy header ${JSON.stringify(text.trim())}`);
  }
  const m = /^([<>|=])?(f2|f4|f8|u1|i1|i4|i8)$/.exec(descr);
  if (!m) throw new DataError(`${label}: dtype '${descr}' is not supported; expected float32 ('<f4'), float64 or float16, either endianness (or int8/uint8/int32/int64)`);
  const shape = shapeText.split(',').map((s) => s.trim()).filter((s) => s.length > 0).map(Number);
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) throw new DataError(`${label}: bad shape (${shapeText}) in the .npy header`);
  if (shape.length === 0) throw new DataError(`${label}: a scalar array; expected samples along the first axis`);
  return { kind: m[2] as NpyKind, littleEndian: m[1] !== '>', fortranOrder: fortran === 'True', shape, dataOffset: start + headerLen };
}

/** Converts raw element bytes (C order) to float32. */
function toFloat32(bytes: Uint8Array, h: NpyHeader): Float32Array {
  const n = bytes.length / ITEM_SIZE[h.kind];
  if (h.kind === 'f4' && h.littleEndian && bytes.byteOffset % 4 === 0) {
    return new Float32Array(bytes.buffer, bytes.byteOffset, n).slice();
  }
  const out = new Float32Array(n);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const le = h.littleEndian;
  switch (h.kind) {
    case 'f2': for (let i = 0; i < n; i++) out[i] = halfToNumber(view.getUint16(i * 2, le)); break;
    case 'f4': for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, le); break;
    case 'f8': for (let i = 0; i < n; i++) out[i] = view.getFloat64(i * 8, le); break;
    case 'u1': for (let i = 0; i < n; i++) out[i] = view.getUint8(i); break;
    case 'i1': for (let i = 0; i < n; i++) out[i] = view.getInt8(i); break;
    case 'i4': for (let i = 0; i < n; i++) out[i] = view.getInt32(i * 4, le); break;
    case 'i8': for (let i = 0; i < n; i++) out[i] = Number(view.getBigInt64(i * 8, le)); break;
  }
  return out;
}

/** For Fortran order: the C-order index of each Fortran-order position within one sample. */
function fortranToC(sampleShape: number[]): Int32Array {
  const size = sampleShape.reduce((a, b) => a * b, 1);
  const map = new Int32Array(size);
  const idx = new Array<number>(sampleShape.length).fill(0);
  for (let f = 0; f < size; f++) {
    let c = 0;
    for (let d = 0; d < sampleShape.length; d++) c = c * sampleShape[d] + idx[d];
    map[f] = c;
    for (let d = 0; d < sampleShape.length; d++) { // Fortran order: the first axis varies fastest
      if (++idx[d] < sampleShape[d]) break;
      idx[d] = 0;
    }
  }
  return map;
}

/** The sample layout a header describes. */
interface Samples { count: number; sampleShape: number[]; sampleSize: number; item: number; notice: string | null }

function describeHeader(h: NpyHeader): Samples {
  const [count, ...sampleShape] = h.shape;
  const sampleSize = sampleShape.reduce((a, b) => a * b, 1);
  const item = ITEM_SIZE[h.kind];
  const names: Record<NpyKind, string> = { f2: 'float16', f4: 'float32', f8: 'float64', u1: 'uint8', i1: 'int8', i4: 'int32', i8: 'int64' };
  return { count, sampleShape, sampleSize, item, notice: h.kind === 'f4' ? null : `${names[h.kind]} data converted to float32` };
}

/**
 * A SampleReader that walks `d`'s samples in order; the two sources (by offset
 * and by stream) differ only in `readAt(i0, n)`, which reads samples i0..i0+n−1
 * (n already clipped to the samples left).
 */
function sequentialReader(label: string, d: Samples, readAt: (i0: number, n: number) => Promise<Float32Array>,
  close: () => Promise<void>): SampleReader {
  let next = 0;
  return {
    label, count: d.count, sampleShape: d.sampleShape, notice: d.notice,
    read(n: number): Promise<Float32Array> {
      n = Math.min(n, d.count - next);
      const i0 = next;
      next += n;
      return readAt(i0, n);
    },
    close,
  };
}

/** Reads samples from a .npy at `region` (a file, or a stored .npz entry) by offset. */
export function npyFromRegion(region: FileRegion): SampleReader {
  const first = region.read(0, Math.min(region.length, 10));
  let parsed = parseNpyHeader(first, region.label);
  if ('needBytes' in parsed) {
    if (parsed.needBytes > region.length) throw new DataError(`${region.label}: truncated .npy header`);
    parsed = parseNpyHeader(region.read(0, parsed.needBytes), region.label);
    if ('needBytes' in parsed) parsed = parseNpyHeader(region.read(0, parsed.needBytes), region.label);
  }
  const h = parsed as NpyHeader;
  const d = describeHeader(h);
  const expected = h.dataOffset + d.count * d.sampleSize * d.item;
  if (region.length < expected) {
    const have = Math.floor((region.length - h.dataOffset) / (d.sampleSize * d.item || 1));
    throw new DataError(`${region.label}: truncated: the header promises ${d.count} samples but the file holds ${have}`);
  }
  const map = h.fortranOrder && d.sampleShape.length > 1 ? fortranToC(d.sampleShape) : null;
  return sequentialReader(region.label, d, async (i0, n) => {
    if (!h.fortranOrder) return toFloat32(region.read(h.dataOffset + i0 * d.sampleSize * d.item, n * d.sampleSize * d.item), h);
    // Fortran order: for each position within a sample, the samples are contiguous.
    const out = new Float32Array(n * d.sampleSize);
    const run = Buffer.alloc(n * d.item);
    for (let p = 0; p < d.sampleSize; p++) {
      region.readInto(run, h.dataOffset + (p * d.count + i0) * d.item);
      const values = toFloat32(run, h);
      const c = map ? map[p] : p;
      for (let i = 0; i < n; i++) out[i * d.sampleSize + c] = values[i];
    }
    return out;
  }, async () => { /* the caller owns the descriptor */ });
}

/**
 * Reads samples from a .npy arriving as a stream (a deflated .npz entry). C
 * order is read batch by batch; Fortran order needs the whole array and is
 * read into memory first.
 */
export async function npyFromStream(stream: StreamBytes): Promise<SampleReader> {
  let prefix: Buffer = await stream.read(10);
  let parsed = parseNpyHeader(prefix, stream.label);
  while ('needBytes' in parsed) {
    const more = await stream.read(parsed.needBytes - prefix.length);
    if (more.length === 0) throw new DataError(`${stream.label}: truncated .npy header`);
    prefix = Buffer.concat([prefix, more]);
    parsed = parseNpyHeader(prefix, stream.label);
  }
  const h = parsed;
  const d = describeHeader(h);
  let whole: Float32Array | null = null;
  const readBytes = async (length: number): Promise<Buffer> => {
    const b = await stream.read(length);
    if (b.length < length) {
      const have = Math.floor((stream.position - h.dataOffset) / (d.sampleSize * d.item || 1));
      throw new DataError(`${stream.label}: truncated: the header promises ${d.count} samples but the data holds ${have}`);
    }
    return b;
  };
  return sequentialReader(stream.label, d, async (i0, n) => {
    if (!h.fortranOrder) return toFloat32(await readBytes(n * d.sampleSize * d.item), h);
    if (!whole) {
      const f = toFloat32(await readBytes(d.count * d.sampleSize * d.item), h);
      const map = fortranToC(d.sampleShape);
      whole = new Float32Array(f.length);
      for (let p = 0; p < d.sampleSize; p++) {
        for (let i = 0; i < d.count; i++) whole[i * d.sampleSize + map[p]] = f[p * d.count + i];
      }
    }
    return whole.slice(i0 * d.sampleSize, (i0 + n) * d.sampleSize);
  }, () => stream.close());
}

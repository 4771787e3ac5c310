// Turns the (x, shape) or tensor-object arguments of the functional API into
// a checked Float32Array and the native dims.
import type { NativeDims } from './native';
import { checkInteger, describe, typeError } from './validate';

/**
 * Memory order of a tensor. `'NCHW'`: shape lists `[N, C, ...spatial]` (any number
 * of spatial dims, including none). `'NHWC'`: channels last, shape lists
 * `[N, ...spatial, C]`. A 2-D `[N, C]` tensor is the same in both.
 */
export type Layout = 'NCHW' | 'NHWC';

/** An onnxruntime-node `Tensor`, or any object with float32 `data` and `dims`. */
export interface TensorLike {
  readonly data: unknown;
  readonly dims: readonly number[];
  readonly type?: string;
}

export interface CheckedTensor {
  data: Float32Array;
  shape: readonly number[];
  dims: NativeDims;
}

export function isTensorLike(value: unknown): value is TensorLike {
  return typeof value === 'object' && value !== null && !ArrayBuffer.isView(value) && 'data' in value && 'dims' in value;
}

/**
 * Splits `(x, shape, options)` or `(tensor, options)` into its parts.
 * @returns the data, the shape and the options argument.
 */
export function tensorArgs(x: unknown, shapeOrOptions: unknown, options: unknown, name = 'x'): [unknown, unknown, unknown] {
  if (isTensorLike(x)) {
    if (x.type !== undefined && x.type !== 'float32') throw typeError(`${name}.type`, "'float32'", x.type);
    return [x.data, x.dims, shapeOrOptions];
  }
  return [x, shapeOrOptions, options];
}

export function checkLayout(value: unknown, name = 'options.layout'): Layout {
  if (value === undefined) return 'NCHW';
  if (value !== 'NCHW' && value !== 'NHWC') throw typeError(name, "'NCHW' or 'NHWC'", value);
  return value;
}

/** Checks data against shape and layout; `groups` splits N into equal ghost batches. */
export function checkTensor(data: unknown, shape: unknown, layout: Layout, name = 'x', groups = 1): CheckedTensor {
  if (!(data instanceof Float32Array)) throw typeError(name, 'a Float32Array (float32 data)', data);
  if (!Array.isArray(shape)) throw typeError('shape', 'an array of dimensions such as [N, C, H, W]', shape);
  if (shape.length < 2) throw new RangeError(`shape: expected at least 2 dims (N, C, ...spatial), got [${shape.join(', ')}]`);
  shape.forEach((d, i) => checkInteger(d, `shape[${i}]`, undefined, 0));
  const dimsList = shape as number[];
  const elements = dimsList.reduce((a, b) => a * b, 1);
  if (elements !== data.length) {
    throw new RangeError(`${name}: shape [${dimsList.join(', ')}] (${layout}) has ${elements} elements, but ${name} has ${data.length}`);
  }
  const n = dimsList[0];
  const c = layout === 'NCHW' ? dimsList[1] : dimsList[dimsList.length - 1];
  const spatialDims = layout === 'NCHW' ? dimsList.slice(2) : dimsList.slice(1, -1);
  const spatial = spatialDims.reduce((a, b) => a * b, 1);
  if (n === 0) throw new RangeError(`${name}: the batch is empty (shape [${dimsList.join(', ')}] has N = 0)`);
  if (c === 0) throw new RangeError(`${name}: shape [${dimsList.join(', ')}] has no channels (C = 0 in ${layout})`);
  if (spatial === 0) throw new RangeError(`${name}: shape [${dimsList.join(', ')}] has a spatial dimension of 0`);
  if (n % groups !== 0) {
    throw new RangeError(`options.groups: expected a divisor of the batch size N = ${n}, got ${groups}`);
  }
  return { data, shape: dimsList, dims: { n, c, spatial, layout: layout === 'NCHW' ? 0 : 1, groupSize: groups === 1 ? 0 : n / groups } };
}

/** Checks that dy matches x in length; both come from the same shape. */
export function checkSameShape(data: unknown, x: CheckedTensor, name: string): Float32Array {
  if (!(data instanceof Float32Array)) throw typeError(name, 'a Float32Array (float32 data)', data);
  if (data.length !== x.data.length) {
    throw new RangeError(`${name}: expected ${x.data.length} elements (shape [${x.shape.join(', ')}]), got ${data.length}`);
  }
  return data;
}

/** A caller-given output array: right length, and either x itself (in place) or not overlapping it. */
export function checkOut(out: unknown, x: CheckedTensor, name = 'options.out', inputs: Float32Array[] = [x.data]): Float32Array {
  if (out === undefined) return new Float32Array(x.data.length);
  if (!(out instanceof Float32Array)) throw typeError(name, 'a Float32Array', out);
  if (out.length !== x.data.length) throw new RangeError(`${name}: expected ${x.data.length} elements, got ${out.length}`);
  for (const input of inputs) {
    if (out.buffer !== input.buffer || out.byteOffset === input.byteOffset) continue;
    const overlap = out.byteOffset < input.byteOffset + input.byteLength && input.byteOffset < out.byteOffset + out.byteLength;
    if (overlap) throw new RangeError(`${name}: overlaps an input partially (${describe(out)} at byte ${out.byteOffset}); pass the input itself to work in place, or a separate array`);
  }
  return out;
}

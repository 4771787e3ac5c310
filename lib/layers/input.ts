// Turning a layer's forward arguments into a checked tensor, and views of
// contiguous sample ranges (N is outermost in both layouts, so a range of
// samples is a zero-copy subarray).
import { checkLayout, checkTensor, CheckedTensor, Layout, tensorArgs } from '../tensor';
import { typeError } from '../validate';

/** Checks `(x, shape)` or a tensor object for a layer with `channels` channels. */
export function layerInput(x: unknown, shape: unknown, layout: Layout, channels: number, who: string): CheckedTensor {
  const [data, dims] = tensorArgs(x, shape, undefined);
  const t = checkTensor(data, dims, checkLayout(layout), 'x');
  if (t.dims.c !== channels) {
    throw new RangeError(`x: ${who} expects ${channels} channels (${layout === 'NCHW' ? 'shape[1]' : 'the last dim'}), ` +
      `got ${t.dims.c} in shape [${t.shape.join(', ')}] (${layout})`);
  }
  return t;
}

/** Checks dy against the input saved by the last forward. */
export function gradInput(dy: unknown, saved: CheckedTensor | null, who: string): Float32Array {
  if (saved === null) throw new Error(`${who}.backward: no forward to differentiate; call forward first`);
  const [data] = tensorArgs(dy, undefined, undefined, 'dy');
  if (!(data instanceof Float32Array)) throw typeError('dy', 'a Float32Array (float32 data)', data);
  if (data.length !== saved.data.length) {
    throw new RangeError(`dy: expected ${saved.data.length} elements (the shape [${saved.shape.join(', ')}] of the last forward), got ${data.length}`);
  }
  return data;
}

/** Elements per sample. */
export function sampleSize(t: CheckedTensor): number {
  return t.dims.c * t.dims.spatial;
}

/** The shape of `count` samples of t. */
export function shapeWithN(t: CheckedTensor, count: number): number[] {
  return [count, ...t.shape.slice(1)];
}

/** Samples [start, start + count) of an array laid out like t, without copying. */
export function samples(data: Float32Array, t: CheckedTensor, start: number, count: number): Float32Array {
  const size = sampleSize(t);
  return data.subarray(start * size, (start + count) * size);
}

// Checks for loadState: names as in PyTorch's state_dict, sizes as the layer's.
import { typeError } from '../validate';
import type { LayerStateInput } from './layer';

/** Rejects a state that lacks a required name or has one the layer does not know (PyTorch's strict loading). */
export function checkStateKeys(state: unknown, required: readonly string[], optional: readonly string[] = []): LayerStateInput {
  if (typeof state !== 'object' || state === null || Array.isArray(state) || ArrayBuffer.isView(state)) {
    throw typeError('state', 'a state object such as layer.state() returns', state);
  }
  const s = state as LayerStateInput;
  for (const key of required) {
    if (!(key in s)) throw typeError(`state.${key}`, `an entry (the layer's state has ${required.join(', ')})`, undefined);
  }
  for (const key of Object.keys(s)) {
    if (!required.includes(key) && !optional.includes(key)) {
      throw new TypeError(`state.${key}: unexpected entry; expected ${[...required, ...optional].join(', ')}`);
    }
  }
  return s;
}

/** A per-channel tensor of a state as float32 (copied). */
export function stateArray(state: LayerStateInput, key: string, length: number): Float32Array {
  const v = state[key];
  const ok = Array.isArray(v) || v instanceof Float32Array || v instanceof Float64Array;
  if (!ok) throw typeError(`state.${key}`, `a number[], Float32Array or Float64Array of ${length} values`, v);
  const a = v as ArrayLike<number>;
  if (a.length !== length) throw new RangeError(`state.${key}: expected ${length} values, got ${a.length}`);
  if (Array.isArray(v) && v.some((e) => typeof e !== 'number')) {
    throw typeError(`state.${key}`, 'numbers only', v.find((e) => typeof e !== 'number'));
  }
  return Float32Array.from(a);
}

/** A count such as num_batches_tracked: a non-negative integer number or bigint (PyTorch stores int64). */
export function stateCount(state: LayerStateInput, key: string): number {
  let v = state[key];
  if (ArrayBuffer.isView(v) || Array.isArray(v)) {
    const a = v as ArrayLike<number | bigint>;
    if (a.length !== 1) throw new RangeError(`state.${key}: expected one value (a scalar), got ${a.length}`);
    v = a[0];
  }
  if (typeof v === 'bigint') {
    if (v < 0n || v > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError(`state.${key}: expected a count from 0 to 2^53 - 1, got ${v}`);
    return Number(v);
  }
  if (typeof v !== 'number' || !Number.isInteger(v)) throw typeError(`state.${key}`, 'a non-negative integer', v);
  if (v < 0) throw new RangeError(`state.${key}: expected a non-negative integer, got ${v}`);
  return v;
}

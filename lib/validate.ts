// Argument checks with messages that name the argument, what was expected and
// what was given. Everything is checked here, before any native call.

/** A short description of a value for error messages: `Float64Array(5)`, `number 2.5`, `undefined`. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (ArrayBuffer.isView(value)) {
    const name = value.constructor.name;
    return 'length' in value ? `${name}(${(value as unknown as { length: number }).length})` : name;
  }
  if (Array.isArray(value)) return `Array(${value.length})`;
  if (typeof value === 'string') return `string ${JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value)}`;
  if (typeof value === 'number' || typeof value === 'boolean') return `${typeof value} ${value}`;
  if (typeof value === 'object') return `object ${(value as object).constructor?.name ?? ''}`.trim();
  return typeof value;
}

export function typeError(name: string, expected: string, actual: unknown): TypeError {
  return new TypeError(`${name}: expected ${expected}, got ${describe(actual)}`);
}

export function checkBoolean(value: unknown, name: string, fallback?: boolean): boolean {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== 'boolean') throw typeError(name, 'a boolean', value);
  return value;
}

export function checkNumber(value: unknown, name: string, fallback: number | undefined, min: number, max = Infinity): number {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== 'number') throw typeError(name, 'a number', value);
  if (!(value >= min && value <= max)) {
    const range = max === Infinity ? `>= ${min}` : `in [${min}, ${max}]`;
    throw new RangeError(`${name}: expected a number ${range}, got ${value}`);
  }
  return value;
}

export function checkInteger(value: unknown, name: string, fallback: number | undefined, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const v = checkNumber(value, name, fallback, -Infinity, Infinity);
  if (!Number.isInteger(v)) throw typeError(name, 'an integer', value);
  if (v < min || v > max) throw new RangeError(`${name}: expected an integer from ${min} to ${max}, got ${v}`);
  return v;
}

export function checkObject<T extends object>(value: unknown, name: string): Partial<T> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw typeError(name, 'an options object', value);
  return value as Partial<T>;
}

/** Per-channel values accepted as Float32Array, Float64Array or number[]. */
export type ChannelValues = Float32Array | Float64Array | readonly number[];

export function checkChannelValues(value: unknown, name: string, length: number): ArrayLike<number> {
  const ok = value instanceof Float32Array || value instanceof Float64Array || Array.isArray(value);
  if (!ok) throw typeError(name, `a Float32Array, Float64Array or number[] of ${length} values`, value);
  const v = value as ArrayLike<number>;
  if (v.length !== length) throw new RangeError(`${name}: expected ${length} values (one per channel${length > 0 ? '' : ''}), got ${v.length}`);
  if (Array.isArray(v) && v.some((e) => typeof e !== 'number')) throw typeError(name, 'numbers only', v.find((e) => typeof e !== 'number'));
  return v;
}

/** Typed arrays of at most this many bytes live on V8's heap, where allocating one costs ~25 ns. */
const ON_HEAP_BYTES = 64;

/**
 * `count` arrays of `length` values, views of one allocation: in V8 an
 * ArrayBuffer outside its heap costs ~0.4 µs, a view a fraction of that, which
 * matters for the per-call overhead on small tensors. Arrays small enough for
 * V8's heap are separate (2 × 16 floats: 46 ns against 390 ns as views).
 *
 * @example
 * const [mean, invstd] = channelArrays(Float64Array, 16, 2);
 */
export function channelArrays<A extends Float64Array | Float32Array>(
  type: { new (length: number): A; readonly BYTES_PER_ELEMENT: number }, length: number, count: number): A[] {
  const arrays: A[] = [];
  if (length * type.BYTES_PER_ELEMENT <= ON_HEAP_BYTES) {
    for (let i = 0; i < count; ++i) arrays.push(new type(length));
    return arrays;
  }
  const all = new type(length * count);
  for (let i = 0; i < count; ++i) arrays.push(all.subarray(i * length, (i + 1) * length) as A);
  return arrays;
}

/** As a Float64Array, copying only when it is not one already (the constructor copies typed arrays fastest). */
export function float64Values(value: unknown, name: string, length: number): Float64Array {
  const v = checkChannelValues(value, name, length);
  return v instanceof Float64Array ? v : new Float64Array(v);
}

/** As a Float32Array, copying only when it is not one already. */
export function float32Values(value: unknown, name: string, length: number): Float32Array {
  const v = checkChannelValues(value, name, length);
  return v instanceof Float32Array ? v : new Float32Array(v);
}

export function optionalFloat32Values(value: unknown, name: string, length: number): Float32Array | null {
  return value === undefined || value === null ? null : float32Values(value, name, length);
}

/** Rejects option names that are not known, so a typo does not silently fall back to a default. */
export function checkKeys(options: object, allowed: readonly string[], name = 'options'): void {
  for (const key of Object.keys(options)) {
    if (!allowed.includes(key)) throw new TypeError(`${name}.${key}: unknown option; expected one of ${allowed.join(', ')}`);
  }
}

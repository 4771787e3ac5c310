// A minimal protobuf reader that keeps byte ranges, and a writer that splices
// edits into the original bytes. A model written back with no edits is the
// same bytes; with edits, only the edited fields and the length prefixes of the
// messages that enclose them change. A generic decode + re-encode would
// reorder fields, drop unknown ones and change varint widths.

/** Protobuf wire types. */
export const enum Wire { Varint = 0, Fixed64 = 1, Len = 2, StartGroup = 3, EndGroup = 4, Fixed32 = 5 }

/** One field occurrence in a message, with its byte ranges in the buffer. */
export interface Field {
  /** Field number. */
  num: number;
  wire: Wire;
  /** Start of the tag. */
  start: number;
  /** Start of the value (for Len: of the payload, after the length prefix). */
  valueStart: number;
  /** End of the value (exclusive). */
  end: number;
  /** Start of the length prefix (Len only; equals valueStart otherwise). */
  lenStart: number;
}

/** Thrown when bytes are not a well-formed protobuf message. */
export class ProtobufError extends Error {}

/** Reads a varint at `pos`; returns the value (as a number, exact below 2^53) and the next position. */
export function readVarint(buf: Uint8Array, pos: number, end: number): [number, number] {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (pos >= end) throw new ProtobufError(`truncated varint at byte ${pos}`);
    const b = buf[pos++];
    value += (b & 0x7f) * scale;
    scale *= 128;
    if ((b & 0x80) === 0) return [value, pos];
  }
  throw new ProtobufError(`varint longer than 10 bytes at byte ${pos}`);
}

/** Reads a varint as a signed 64-bit integer (two's complement), as int64 fields are encoded. */
export function readInt64(buf: Uint8Array, pos: number, end: number): [bigint, number] {
  let value = 0n;
  let shift = 0n;
  for (let i = 0; i < 10; i++) {
    if (pos >= end) throw new ProtobufError(`truncated varint at byte ${pos}`);
    const b = buf[pos++];
    value |= BigInt(b & 0x7f) << shift;
    shift += 7n;
    if ((b & 0x80) === 0) return [BigInt.asIntN(64, value), pos];
  }
  throw new ProtobufError(`varint longer than 10 bytes at byte ${pos}`);
}

/**
 * Splits the message in buf[start, end) into its fields, in order. Nested
 * messages are not decoded: call again on a field's [valueStart, end).
 */
export function parseFields(buf: Uint8Array, start = 0, end = buf.length): Field[] {
  const fields: Field[] = [];
  let pos = start;
  while (pos < end) {
    const fieldStart = pos;
    const [tag, afterTag] = readVarint(buf, pos, end);
    const num = Math.floor(tag / 8);
    const wire = (tag & 7) as Wire;
    if (num === 0) throw new ProtobufError(`field number 0 at byte ${fieldStart}`);
    pos = afterTag;
    let valueStart = pos;
    let lenStart = pos;
    switch (wire) {
      case Wire.Varint: pos = readVarint(buf, pos, end)[1]; break;
      case Wire.Fixed64: pos += 8; break;
      case Wire.Fixed32: pos += 4; break;
      case Wire.Len: {
        const [len, after] = readVarint(buf, pos, end);
        valueStart = after;
        pos = after + len;
        break;
      }
      default: throw new ProtobufError(`unsupported wire type ${wire} at byte ${fieldStart}`);
    }
    if (pos > end) throw new ProtobufError(`field ${num} at byte ${fieldStart} runs past the end of its message (byte ${end})`);
    fields.push({ num, wire, start: fieldStart, valueStart, end: pos, lenStart });
  }
  return fields;
}

const utf8 = new TextDecoder('utf-8');

/** The UTF-8 string of a Len field. */
export function fieldString(buf: Uint8Array, f: Field): string {
  return utf8.decode(buf.subarray(f.valueStart, f.end));
}

/** The value of a Varint field as a number. */
export function fieldVarint(buf: Uint8Array, f: Field): number {
  if (f.wire !== Wire.Varint) throw new ProtobufError(`field ${f.num} at byte ${f.start}: expected a varint`);
  return Number(readInt64(buf, f.valueStart, f.end)[0]);
}

/** The value of a Fixed32 field as a float32. */
export function fieldFloat(buf: Uint8Array, f: Field): number {
  if (f.wire !== Wire.Fixed32) throw new ProtobufError(`field ${f.num} at byte ${f.start}: expected a 32-bit float`);
  return new DataView(buf.buffer, buf.byteOffset + f.valueStart, 4).getFloat32(0, true);
}

/**
 * Values of a repeated int64 field, which may occur packed (one Len field) or
 * not (one Varint per value), or both mixed, as the spec allows.
 */
export function repeatedInt64(buf: Uint8Array, fields: readonly Field[]): number[] {
  const out: number[] = [];
  for (const f of fields) {
    if (f.wire === Wire.Varint) {
      out.push(fieldVarint(buf, f));
    } else if (f.wire === Wire.Len) {
      let pos = f.valueStart;
      while (pos < f.end) {
        const [v, next] = readInt64(buf, pos, f.end);
        out.push(Number(v));
        pos = next;
      }
    } else {
      throw new ProtobufError(`field ${f.num} at byte ${f.start}: expected int64 values`);
    }
  }
  return out;
}

// ---- encoding ------------------------------------------------------------

/** The varint encoding of a non-negative integer (or a bigint, two's complement for negatives). */
export function encodeVarint(value: number | bigint): Uint8Array {
  let v = BigInt.asUintN(64, BigInt(value));
  const bytes: number[] = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v !== 0n) b |= 0x80;
    bytes.push(b);
  } while (v !== 0n);
  return Uint8Array.from(bytes);
}

/** Concatenates byte chunks. */
export function concat(chunks: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const c of chunks) total += c.length;
  const out = new Uint8Array(total);
  let pos = 0;
  for (const c of chunks) {
    out.set(c, pos);
    pos += c.length;
  }
  return out;
}

/** A tag: field number and wire type. */
export function encodeTag(num: number, wire: Wire): Uint8Array {
  return encodeVarint(num * 8 + wire);
}

/** A whole Len field: tag, length, payload. */
export function lenField(num: number, payload: Uint8Array | string): Uint8Array {
  const bytes = typeof payload === 'string' ? new TextEncoder().encode(payload) : payload;
  return concat([encodeTag(num, Wire.Len), encodeVarint(bytes.length), bytes]);
}

/** A whole Varint field. */
export function varintField(num: number, value: number | bigint): Uint8Array {
  return concat([encodeTag(num, Wire.Varint), encodeVarint(value)]);
}

/** A whole Fixed32 float field. */
export function floatField(num: number, value: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setFloat32(0, value, true);
  return concat([encodeTag(num, Wire.Fixed32), b]);
}

/** A packed repeated int64 field. */
export function packedInt64Field(num: number, values: readonly (number | bigint)[]): Uint8Array {
  return lenField(num, concat(values.map((v) => encodeVarint(v))));
}

// ---- splicing ------------------------------------------------------------

/**
 * Edits to one message, by the index of a field in `parseFields` order.
 * `replace` swaps a whole field (tag included) for other bytes (empty: delete);
 * `children` edits a nested message in place; `append` adds fields at the end.
 */
export class MessageEdit {
  readonly replace = new Map<number, Uint8Array>();
  readonly children = new Map<number, MessageEdit>();
  readonly append: Uint8Array[] = [];

  /** The edit of the nested message in field `index`, created on first use. */
  child(index: number): MessageEdit {
    let e = this.children.get(index);
    if (!e) {
      e = new MessageEdit();
      this.children.set(index, e);
    }
    return e;
  }

  /** The edit reached by following field indices from this message. */
  at(path: readonly number[]): MessageEdit {
    let e: MessageEdit = this;
    for (const i of path) e = e.child(i);
    return e;
  }

  isEmpty(): boolean {
    return this.replace.size === 0 && this.children.size === 0 && this.append.length === 0;
  }
}

/**
 * Writes buf[start, end) with the edits applied. Unedited fields are copied
 * byte for byte; an edited nested message keeps its tag bytes and gets a new
 * length prefix.
 */
export function applyEdit(buf: Uint8Array, edit: MessageEdit, start = 0, end = buf.length): Uint8Array {
  if (edit.isEmpty()) return buf.subarray(start, end);
  const chunks: Uint8Array[] = [];
  write(buf, start, end, edit, chunks);
  return concat(chunks);
}

function write(buf: Uint8Array, start: number, end: number, edit: MessageEdit, out: Uint8Array[]): void {
  const fields = parseFields(buf, start, end);
  for (const i of [...edit.replace.keys(), ...edit.children.keys()]) {
    if (i < 0 || i >= fields.length) throw new RangeError(`edit names field index ${i}, but the message has ${fields.length} fields`);
  }
  let copyFrom = start;
  fields.forEach((f, i) => {
    const replacement = edit.replace.get(i);
    const child = edit.children.get(i);
    if (replacement === undefined && child === undefined) return;
    out.push(buf.subarray(copyFrom, f.start));
    copyFrom = f.end;
    if (replacement !== undefined) {
      out.push(replacement);
      return;
    }
    if (f.wire !== Wire.Len) throw new RangeError(`field index ${i} (number ${f.num}) is not a nested message`);
    const body: Uint8Array[] = [];
    write(buf, f.valueStart, f.end, child as MessageEdit, body);
    const bodyLength = body.reduce((a, c) => a + c.length, 0);
    out.push(buf.subarray(f.start, f.lenStart), encodeVarint(bodyLength), ...body);
  });
  out.push(buf.subarray(copyFrom, end), ...edit.append);
}

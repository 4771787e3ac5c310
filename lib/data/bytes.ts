// Byte sources for the data readers: random access into a file (a .npy, or a
// stored entry of a .npz), or a sequential stream (a deflated .npz entry).
// Neither holds the whole file: calibration data may be larger than memory.
import * as fs from 'fs';
import { Readable } from 'stream';

/** Thrown for data rebatch cannot read; the message names the file. */
export class DataError extends Error {}

/** Bytes read at any offset, synchronously, from a region of a file. */
export class FileRegion {
  /**
   * @param fd an open file descriptor
   * @param base offset of the region in the file
   * @param length length of the region
   * @param label the file's name, for messages
   */
  constructor(readonly fd: number, readonly base: number, readonly length: number, readonly label: string) {}

  /** Fills `out` from `offset` within the region; a short read is a truncated file. */
  readInto(out: Uint8Array, offset: number): void {
    if (offset + out.length > this.length) {
      throw new DataError(`${this.label}: truncated: wanted bytes ${offset}..${offset + out.length} but the data has ${this.length}`);
    }
    let done = 0;
    while (done < out.length) {
      const n = fs.readSync(this.fd, out, done, out.length - done, this.base + offset + done);
      if (n === 0) throw new DataError(`${this.label}: truncated: the file ends at byte ${this.base + offset + done}`);
      done += n;
    }
  }

  /** Reads `length` bytes from `offset` within the region. */
  read(offset: number, length: number): Buffer {
    const out = Buffer.alloc(length);
    this.readInto(out, offset);
    return out;
  }
}

/** Bytes read in order from a stream, with backpressure (the stream is paused between reads). */
export class StreamBytes {
  private readonly iterator: AsyncIterator<Buffer>;
  private pending: Buffer[] = [];
  private pendingLength = 0;
  private ended = false;
  /** Bytes handed out so far. */
  position = 0;

  constructor(stream: Readable, readonly label: string) {
    this.iterator = stream[Symbol.asyncIterator]();
  }

  /** The next `length` bytes; fewer only at the end of the stream. */
  async read(length: number): Promise<Buffer> {
    while (this.pendingLength < length && !this.ended) {
      let r: IteratorResult<Buffer>;
      try {
        r = await this.iterator.next();
      } catch (e) {
        throw new DataError(`${this.label}: cannot decompress (${(e as Error).message})`);
      }
      if (r.done) this.ended = true;
      else {
        this.pending.push(r.value);
        this.pendingLength += r.value.length;
      }
    }
    const all = this.pending.length === 1 ? this.pending[0] : Buffer.concat(this.pending);
    const take = Math.min(length, all.length);
    const out = all.subarray(0, take);
    const rest = all.subarray(take);
    this.pending = rest.length ? [rest] : [];
    this.pendingLength = rest.length;
    this.position += take;
    return out;
  }

  /** Stops reading and releases the stream. */
  async close(): Promise<void> {
    await this.iterator.return?.();
  }
}

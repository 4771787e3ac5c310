// NumPy .npz archives: a zip of .npy files. Stored entries are read by offset
// like a .npy; deflated ones (np.savez_compressed) are inflated as a stream.
// Zip64 is handled, as numpy writes it for large arrays.
import * as fs from 'fs';
import * as zlib from 'zlib';
import { DataError, FileRegion, StreamBytes } from './bytes';
import { npyFromRegion, npyFromStream, SampleReader } from './npy';

/** One member of a zip archive. */
export interface ZipEntry {
  name: string;
  /** 0 = stored, 8 = deflated. */
  method: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
}

function u16(b: Buffer, o: number): number { return b.readUInt16LE(o); }
function u32(b: Buffer, o: number): number { return b.readUInt32LE(o); }
function u64(b: Buffer, o: number): number { return Number(b.readBigUInt64LE(o)); }

/** Lists the entries of the zip archive open as `fd` (size bytes long). */
export function listZip(fd: number, size: number, label: string): ZipEntry[] {
  const file = new FileRegion(fd, 0, size, label);
  const tailLength = Math.min(size, 22 + 65535);
  const tail = file.read(size - tailLength, tailLength);
  let eocd = -1;
  for (let i = tail.length - 22; i >= 0; i--) {
    if (u32(tail, i) === 0x06054b50) { eocd = i; break; }
  }
  if (eocd < 0) throw new DataError(`${label}: not a .npz (zip) file, or truncated: no end-of-archive record`);
  let entries = u16(tail, eocd + 10);
  let cdSize = u32(tail, eocd + 12);
  let cdOffset = u32(tail, eocd + 16);
  if (entries === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    const locatorAt = size - tailLength + eocd - 20;
    const locator = file.read(locatorAt, 20);
    if (u32(locator, 0) !== 0x07064b50) throw new DataError(`${label}: damaged zip64 archive (no zip64 locator)`);
    const record = file.read(u64(locator, 8), 56);
    if (u32(record, 0) !== 0x06064b50) throw new DataError(`${label}: damaged zip64 archive (no zip64 end record)`);
    entries = u64(record, 32);
    cdSize = u64(record, 40);
    cdOffset = u64(record, 48);
  }
  const cd = file.read(cdOffset, cdSize);
  const out: ZipEntry[] = [];
  let p = 0;
  for (let i = 0; i < entries; i++) {
    if (p + 46 > cd.length || u32(cd, p) !== 0x02014b50) throw new DataError(`${label}: damaged zip central directory`);
    const method = u16(cd, p + 10);
    let compressedSize = u32(cd, p + 20);
    let entrySize = u32(cd, p + 24);
    const nameLen = u16(cd, p + 28);
    const extraLen = u16(cd, p + 30);
    const commentLen = u16(cd, p + 32);
    let localHeaderOffset = u32(cd, p + 42);
    const name = cd.toString('utf8', p + 46, p + 46 + nameLen);
    // Zip64 extra field: the 64-bit values of the fields set to 0xffffffff, in this order.
    let e = p + 46 + nameLen;
    const extraEnd = e + extraLen;
    while (e + 4 <= extraEnd) {
      const id = u16(cd, e);
      const len = u16(cd, e + 2);
      if (id === 0x0001) {
        let q = e + 4;
        if (entrySize === 0xffffffff) { entrySize = u64(cd, q); q += 8; }
        if (compressedSize === 0xffffffff) { compressedSize = u64(cd, q); q += 8; }
        if (localHeaderOffset === 0xffffffff) { localHeaderOffset = u64(cd, q); }
      }
      e += 4 + len;
    }
    out.push({ name, method, compressedSize, size: entrySize, localHeaderOffset });
    p = extraEnd + commentLen;
  }
  return out;
}

/** Where an entry's data starts (after its local header). */
function dataStart(file: FileRegion, entry: ZipEntry): number {
  const h = file.read(entry.localHeaderOffset, 30);
  if (u32(h, 0) !== 0x04034b50) throw new DataError(`${file.label}: damaged zip entry '${entry.name}'`);
  return entry.localHeaderOffset + 30 + u16(h, 26) + u16(h, 28);
}

/**
 * Opens array `key` of a .npz (or its only array when key is null). The file
 * descriptor stays open until the reader is closed.
 */
export async function openNpz(path: string, key: string | null): Promise<SampleReader> {
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch (e) {
    throw new DataError(`${path}: cannot open (${(e as NodeJS.ErrnoException).code})`);
  }
  try {
    const size = fs.fstatSync(fd).size;
    const entries = listZip(fd, size, path).filter((e) => e.name.endsWith('.npy'));
    const keys = entries.map((e) => e.name.slice(0, -4));
    let entry: ZipEntry | undefined;
    if (key === null) {
      if (entries.length !== 1) {
        throw new DataError(`${path}: holds ${entries.length} arrays (${keys.join(', ')}); name one as ${path}:KEY`);
      }
      entry = entries[0];
    } else {
      entry = entries.find((e) => e.name === `${key}.npy`);
      if (!entry) throw new DataError(`${path}: no array '${key}'; it holds ${keys.join(', ') || 'none'}`);
    }
    const label = `${path}:${entry.name.slice(0, -4)}`;
    const file = new FileRegion(fd, 0, size, path);
    const start = dataStart(file, entry);
    if (start + entry.compressedSize > size) throw new DataError(`${label}: truncated archive`);
    let reader: SampleReader;
    if (entry.method === 0) {
      reader = npyFromRegion(new FileRegion(fd, start, entry.size, label));
    } else if (entry.method === 8) {
      const raw = fs.createReadStream(path, { start, end: start + entry.compressedSize - 1, highWaterMark: 1 << 20 });
      const inflate = zlib.createInflateRaw();
      raw.on('error', (err) => inflate.destroy(err));
      reader = await npyFromStream(new StreamBytes(raw.pipe(inflate), label));
    } else {
      throw new DataError(`${label}: zip compression method ${entry.method} is not supported (stored or deflated expected)`);
    }
    const inner = reader.close.bind(reader);
    reader.close = async () => {
      await inner();
      fs.closeSync(fd);
    };
    return reader;
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
}

// Opens calibration data named on the command line: FILE.npy, FILE.npz or
// FILE.npz:KEY.
import * as fs from 'fs';
import { DataError, FileRegion } from './bytes';
import { npyFromRegion, SampleReader } from './npy';
import { openNpz } from './npz';

export { DataError } from './bytes';
export type { SampleReader } from './npy';

/** Splits `FILE.npz:KEY` into file and key; other specs are a file alone. */
export function parseDataSpec(spec: string): { file: string; key: string | null } {
  const m = /^(.*\.npz):([^/\\]+)$/i.exec(spec);
  if (m && !fs.existsSync(spec)) return { file: m[1], key: m[2] };
  return { file: spec, key: null };
}

/** Opens a data spec as a reader of float32 samples. */
export async function openData(spec: string): Promise<SampleReader> {
  const { file, key } = parseDataSpec(spec);
  if (/\.npz$/i.test(file)) return openNpz(file, key);
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    throw new DataError(`${file}: cannot open (${(e as NodeJS.ErrnoException).code})`);
  }
  try {
    const reader = npyFromRegion(new FileRegion(fd, 0, fs.fstatSync(fd).size, file));
    reader.close = async () => fs.closeSync(fd);
    return reader;
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
}

/** Reads all samples of a spec into memory (for small data: tests, the demo). */
export async function readAll(spec: string): Promise<{ data: Float32Array; shape: number[] }> {
  const r = await openData(spec);
  try {
    return { data: await r.read(r.count), shape: [r.count, ...r.sampleShape] };
  } finally {
    await r.close();
  }
}

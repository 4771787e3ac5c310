// Writes a file atomically: a temporary file in the same folder, fsync, then
// rename, so a reader never sees half a model and an error leaves nothing.
import * as fs from 'fs';
import * as path from 'path';

/** The output could not be written (a missing folder, no permission, a full disk): the user's to fix. */
export class OutputError extends Error {}

/** Writes `bytes` to `file` via a temporary file and a rename; the temporary file is removed on error. */
export function writeFileAtomic(file: string, bytes: Uint8Array): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`);
  let fd: number | null = null;
  try {
    fd = fs.openSync(tmp, 'wx');
    let done = 0;
    while (done < bytes.length) done += fs.writeSync(fd, bytes, done, bytes.length - done);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = null;
    fs.renameSync(tmp, file);
  } catch (e) {
    if (fd !== null) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    const code = (e as NodeJS.ErrnoException).code;
    throw code ? new OutputError(`${file}: cannot write (${code})`) : e;
  }
}

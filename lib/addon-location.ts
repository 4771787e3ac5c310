// Where the compiled addon may be, without loading it: used by the loader
// (lib/native.ts) and by `rebatch build-from-source`, which must work when no
// addon loads.
import * as fs from 'fs';
import * as path from 'path';

/** The folder holding rebatch's package.json, found from this file (lib/ in source, dist/lib/ when built). */
export function packageRoot(from = __dirname): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg) && JSON.parse(fs.readFileSync(pkg, 'utf8')).name === 'rebatch') return dir;
    if (path.dirname(dir) === dir) throw new Error(`rebatch: cannot find the package root above ${from}`);
  }
}

/** `linux-x64`, `linux-x64-musl`, `darwin-arm64`, `win32-x64`, ... */
export function platformTag(): string {
  let tag = `${process.platform}-${process.arch}`;
  if (process.platform === 'linux') {
    const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
    if (!header?.glibcVersionRuntime) tag += '-musl';
  }
  return tag;
}

/** The addon files to try, in order, each with where it comes from. */
export function addonCandidates(root = packageRoot()): Array<{ from: string; file: string }> {
  const list: Array<{ from: string; file: string }> = [];
  if (process.env.REBATCH_ADDON_PATH) list.push({ from: 'REBATCH_ADDON_PATH', file: path.resolve(process.env.REBATCH_ADDON_PATH) });
  list.push({ from: 'local build', file: path.join(root, 'build', 'Release', 'rebatch.node') });
  list.push({ from: 'prebuilt binary', file: path.join(root, 'prebuilds', platformTag(), 'rebatch.node') });
  return list;
}

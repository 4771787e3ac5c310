// `npx rebatch build-from-source`: compiles the addon for this machine with
// cmake-js into the package's build/Release, which the loader tries before
// the prebuilt binaries. Needs cmake and a C++17 compiler.
import { spawnSync } from 'child_process';
import * as path from 'path';
import { packageRoot } from './addon-location';

/**
 * Builds build/Release/rebatch.node in the installed package and returns the exit code.
 * @example
 * process.exitCode = buildFromSource();
 */
export function buildFromSource(root = packageRoot(), log: (line: string) => void = console.error): number {
  let cmakeJs: string;
  try {
    cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
  } catch {
    log('rebatch build-from-source: cmake-js is not installed next to rebatch; run `npm install cmake-js` and retry');
    return 2;
  }
  log(`rebatch build-from-source: compiling the addon in ${root} (cmake-js, Release)`);
  const r = spawnSync(process.execPath, [cmakeJs, 'compile', '--directory', root, '--out', path.join(root, 'build')], { stdio: 'inherit' });
  if (r.error || r.status !== 0) {
    log('rebatch build-from-source: the build failed; it needs cmake (>= 3.16) and a C++17 compiler on PATH');
    return 1;
  }
  log(`rebatch build-from-source: built ${path.join(root, 'build', 'Release', 'rebatch.node')}`);
  return 0;
}

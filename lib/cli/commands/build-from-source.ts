// `rebatch build-from-source`: compiles the addon for this machine when no
// prebuilt binary fits. Loads nothing native, so it works when the addon does not.
import { parse } from '../args';
import { Io } from '../io';
import { buildFromSource } from '../../build-from-source';

/** The help text of `rebatch build-from-source`. */
export const usage = `rebatch build-from-source

Compiles rebatch's native addon for this machine with cmake-js into the installed package's
build/Release, which is tried before the prebuilt binaries. Needs cmake (>= 3.16) and a C++17
compiler on PATH.
`;

/** Runs `rebatch build-from-source`. */
export async function run(args: string[], io: Io): Promise<number> {
  const p = parse(args, {}, 'build-from-source');
  if (p.values.help) { io.out(usage); return 0; }
  return buildFromSource(undefined, (line) => io.err(`${line}\n`));
}

#!/usr/bin/env node
// The rebatch CLI; the code is compiled from lib/cli (npm run build).
let cli;
try {
  cli = require('../dist/lib/cli/main.js');
} catch (e) {
  if (e && e.code === 'MODULE_NOT_FOUND' && /dist[\\/]lib[\\/]cli[\\/]main\.js/.test(e.message)) {
    process.stderr.write('rebatch: not built yet; run `npm run build` in the package folder\n');
    process.exit(1);
  }
  throw e;
}
cli.run();

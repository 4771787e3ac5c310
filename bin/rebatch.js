#!/usr/bin/env node
// The rebatch CLI; the code is compiled from lib/cli (npm run build:ts).
require('../dist/lib/cli/main.js').run();

// A description of the machine the benchmark ran on, for the results file.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import { getNumThreads, isa } from '../lib';

export interface Machine {
  cpu: string;
  cpuFamily?: string;
  cpuModel?: string;
  logicalCpus: number;
  caches?: Record<string, string>;
  memoryGiB: number;
  os: string;
  node: string;
  rebatchIsa: string;
  rebatchThreads: number;
}

function cpuinfoField(name: string): string | undefined {
  try {
    const line = fs.readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith(name));
    return line?.split(':')[1]?.trim();
  } catch {
    return undefined;
  }
}

function caches(): Record<string, string> | undefined {
  try {
    const out = execFileSync('lscpu', { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const found: Record<string, string> = {};
    for (const line of out.split('\n')) {
      const m = /^(L1d|L2|L3) cache:\s+(.*)$/.exec(line.trim());
      if (m) found[m[1]] = m[2];
    }
    return Object.keys(found).length ? found : undefined;
  } catch {
    return undefined;
  }
}

export function describeMachine(): Machine {
  return {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cpuFamily: cpuinfoField('cpu family'),
    cpuModel: cpuinfoField('model\t'),
    logicalCpus: os.cpus().length,
    caches: caches(),
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    rebatchIsa: isa(),
    rebatchThreads: getNumThreads(),
  };
}

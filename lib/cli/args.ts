// Command-line parsing on node's util.parseArgs, with the options the
// data-reading commands share and checks that name the bad option.
import { parseArgs } from 'util';
import { CliError } from './errors';
import { PassOptions } from '../onnx/calibrate';
import { PopulationEstimatorKind } from '../population';

type OptionSpec = { type: 'string' | 'boolean'; short?: string; multiple?: boolean };

/** Options every command takes. */
export const COMMON_OPTIONS: Record<string, OptionSpec> = {
  json: { type: 'boolean' },
  debug: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

/** Options of the commands that read calibration data. */
export const DATA_OPTIONS: Record<string, OptionSpec> = {
  data: { type: 'string' },
  input: { type: 'string' },
  'batch-size': { type: 'string' },
  'max-samples': { type: 'string' },
  'drop-last': { type: 'boolean' },
  estimator: { type: 'string' },
  threads: { type: 'string' },
};

/** Parsed option values and positional arguments. */
export interface Parsed {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

/** Parses `args` against `options` (plus the common ones); unknown options are a CliError. */
export function parse(args: string[], options: Record<string, OptionSpec>, command: string): Parsed {
  try {
    const r = parseArgs({ args, options: { ...COMMON_OPTIONS, ...options }, allowPositionals: true, strict: true });
    return { values: r.values as Parsed['values'], positionals: r.positionals };
  } catch (e) {
    throw new CliError(`rebatch ${command}: ${(e as Error).message.split('\n')[0]} (see rebatch ${command} --help)`);
  }
}

/** A positive integer option, or `fallback` when absent. */
export function intOption(p: Parsed, name: string, fallback: number | undefined, min = 1): number | undefined {
  const v = p.values[name];
  if (v === undefined) return fallback;
  const n = Number(v);
  if (typeof v !== 'string' || !Number.isInteger(n) || n < min) throw new CliError(`--${name}: expected an integer ≥ ${min}, got '${v}'`);
  return n;
}

/** A string option that must be given. */
export function requiredString(p: Parsed, name: string, command: string): string {
  const v = p.values[name];
  if (typeof v !== 'string' || v === '') throw new CliError(`rebatch ${command}: --${name} is required (see rebatch ${command} --help)`);
  return v;
}

/** The --estimator option. */
export function estimatorOption(p: Parsed, fallback: PopulationEstimatorKind = 'pooled'): PopulationEstimatorKind {
  const v = p.values.estimator;
  if (v === undefined) return fallback;
  if (v !== 'pooled' && v !== 'batch-average') throw new CliError(`--estimator: expected 'pooled' or 'batch-average', got '${v}'`);
  return v;
}

/** The batching options of a data pass (without progress). */
export function passOptions(p: Parsed): PassOptions {
  return {
    input: typeof p.values.input === 'string' ? p.values.input : undefined,
    batchSize: intOption(p, 'batch-size', 32) as number,
    maxSamples: intOption(p, 'max-samples', undefined),
    dropLast: p.values['drop-last'] === true,
    threads: intOption(p, 'threads', 0, 0),
  };
}

/** Exactly one positional argument (the model), else a CliError. */
export function oneModel(p: Parsed, command: string): string {
  if (p.positionals.length !== 1) {
    throw new CliError(`rebatch ${command}: expected one MODEL.onnx argument, got ${p.positionals.length ? p.positionals.join(' ') : 'none'} (see rebatch ${command} --help)`);
  }
  return p.positionals[0];
}

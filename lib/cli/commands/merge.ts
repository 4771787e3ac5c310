// `rebatch merge`: combines partial statistics from `rebatch stats` runs and
// writes the model, as one `rebatch recompute` over all the shards would.
import * as fs from 'fs';
import { estimatorOption, parse } from '../args';
import { CliError } from '../errors';
import { driftTable } from '../format';
import { Io } from '../io';
import { loadBatchNormModel, withPopulationStats, writeModel } from '../../onnx/recompute';
import { checkPartial, mergePartials } from '../../onnx/partial';
import { layerReports } from '../../onnx/report';
import { PopulationEstimatorKind } from '../../population';
import { writeFileAtomic } from '../../onnx/atomic';

/** The help text of `rebatch merge`. */
export const usage = `rebatch merge PART.json... --model MODEL.onnx --out OUT.onnx [--estimator E] [--stats-out STATS.json] [--json]

Merges partial statistics (from rebatch stats, given in data order) and writes MODEL with the
population statistics of all shards. The estimator defaults to the one the shards recorded.
`;

/** Runs `rebatch merge`. */
export async function run(args: string[], io: Io): Promise<number> {
  const p = parse(args, { model: { type: 'string' }, out: { type: 'string' }, estimator: { type: 'string' }, 'stats-out': { type: 'string' } }, 'merge');
  if (p.values.help) { io.out(usage); return 0; }
  if (p.positionals.length === 0) throw new CliError('rebatch merge: expected one or more PART.json files (see rebatch merge --help)');
  if (typeof p.values.model !== 'string') throw new CliError('rebatch merge: --model MODEL.onnx is required');
  if (typeof p.values.out !== 'string') throw new CliError('rebatch merge: --out OUT.onnx is required');
  const parts = p.positionals.map((file) => {
    let text: string;
    let json: unknown;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      throw new CliError(`${file}: cannot read (${(e as NodeJS.ErrnoException).code})`);
    }
    try {
      json = JSON.parse(text) as unknown;
    } catch (e) {
      throw new CliError(`${file}: not JSON (${(e as Error).message})`);
    }
    // Format and version first, so an old or foreign file is named as such.
    return { file, json: checkPartial(file, json) };
  });
  const recorded = new Set(parts.map((x) => x.json.estimator));
  let estimator: PopulationEstimatorKind;
  if (p.values.estimator !== undefined) estimator = estimatorOption(p);
  else if (recorded.size === 1 && (recorded.has('pooled') || recorded.has('batch-average'))) estimator = [...recorded][0];
  else throw new CliError(`rebatch merge: the parts recorded different estimators (${[...recorded].join(', ')}); choose one with --estimator`);
  const batchSizes = new Set(parts.map((x) => x.json.batchSize));
  if (batchSizes.size > 1) io.err(`note: the parts used different batch sizes (${[...batchSizes].join(', ')}); one recompute would use one\n`);
  const { model, bns } = loadBatchNormModel(p.values.model);
  const { populations, samples } = mergePartials(model, bns, parts, estimator);
  const layers = layerReports(model, bns, populations, samples);
  writeModel(model, withPopulationStats(model, bns, populations), p.values.out);
  const batches = populations[0].batches;
  const statsOut = typeof p.values['stats-out'] === 'string' ? p.values['stats-out'] : null;
  if (statsOut) {
    writeFileAtomic(statsOut, Buffer.from(JSON.stringify({ rebatch: 'statistics', version: 1, model: p.values.model, output: p.values.out, parts: p.positionals, estimator, samples, batches, layers }, null, 1)));
  }
  if (p.values.json) {
    io.out(`${JSON.stringify({
      command: 'merge', model: p.values.model, output: p.values.out, parts: p.positionals, estimator, samples, batches, statsOut,
      layers: layers.map((l) => ({ name: l.name, channels: l.channels, drift: l.drift, meanShift: l.meanShift, stdRatio: l.stdRatio })),
    }, null, 2)}\n`);
    return 0;
  }
  io.out(`${p.values.model}: merged ${parts.length} part(s): ${samples} samples in ${batches} batch(es), estimator ${estimator}\n`);
  io.out(driftTable(layers));
  io.out(`wrote ${p.values.out} (only the BN mean and variance tensors changed)\n`);
  return 0;
}

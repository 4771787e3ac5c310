// `rebatch stats`: the statistics pass over one shard of the data, saved as
// partial statistics for `rebatch merge`. Shards can run in separate
// processes or machines; split the data at multiples of --batch-size so the
// batches are those of one pass over all of it.
import { DATA_OPTIONS, estimatorOption, oneModel, parse, passOptions, requiredString } from '../args';
import { Io } from '../io';
import { Progress } from '../progress';
import { loadBatchNormModel, passOverData } from '../../onnx/recompute';
import { partialStats } from '../../onnx/partial';
import { writeFileAtomic } from '../../onnx/atomic';

/** The help text of `rebatch stats`. */
export const usage = `rebatch stats MODEL.onnx --data FILE [data options] --stats-out PART.json

Runs the statistics pass of \`rebatch recompute\` over one shard of the calibration data and
saves the per-layer statistics. \`rebatch merge PART.json... --model MODEL.onnx --out OUT.onnx\`
then writes the model that one recompute over all shards (concatenated in the order given)
would write. Split the data at multiples of --batch-size.

  --data FILE, --input NAME, --batch-size N, --max-samples N, --drop-last, --threads N: as for recompute
  --estimator E   recorded as the default for merge (pooled or batch-average; both are kept)
  --stats-out F   where to write the partial statistics (required)
  --json          print a summary as JSON
`;

/** Runs `rebatch stats`. */
export async function run(args: string[], io: Io): Promise<number> {
  const p = parse(args, { ...DATA_OPTIONS, 'stats-out': { type: 'string' } }, 'stats');
  if (p.values.help) { io.out(usage); return 0; }
  const modelFile = oneModel(p, 'stats');
  const dataSpec = requiredString(p, 'data', 'stats');
  const statsOut = requiredString(p, 'stats-out', 'stats');
  const estimator = estimatorOption(p);
  const pass = passOptions(p);
  const { model, bns } = loadBatchNormModel(modelFile);
  const progress = new Progress(io, 'stats', p.values.json !== true && io.stderrIsTTY);
  const r = await passOverData(model, bns, dataSpec, { ...pass, estimator, onProgress: (d, t) => progress.update(d, t) },
    (note) => io.err(`note: ${note}\n`)).finally(() => progress.done());
  const part = partialStats(model, bns, r.populations, {
    data: dataSpec, input: r.input, batchSize: pass.batchSize, estimator, samples: r.samples, batches: r.batches,
  });
  writeFileAtomic(statsOut, Buffer.from(JSON.stringify(part)));
  const summary = { command: 'stats', model: modelFile, data: dataSpec, statsOut, samples: r.samples, batches: r.batches, layers: bns.length };
  if (p.values.json) io.out(`${JSON.stringify(summary, null, 2)}\n`);
  else io.out(`${modelFile}: ${r.samples} samples from ${dataSpec} in ${r.batches} batch(es); statistics of ${bns.length} BN node(s) written to ${statsOut}\n`);
  return 0;
}

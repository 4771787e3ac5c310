// `rebatch recompute`: PreciseBN for an ONNX model. Runs the model over the
// data with every BN in training mode, aggregates each BN input's batch
// statistics, and writes a copy whose only change is the BN mean and variance.
import * as fs from 'fs';
import { DATA_OPTIONS, estimatorOption, oneModel, parse, passOptions, requiredString } from '../args';
import { CliError } from '../errors';
import { driftTable } from '../format';
import { Io } from '../io';
import { Progress } from '../progress';
import { defaultOutput, loadBatchNormModel, passOverData, withPopulationStats, writeModel } from '../../onnx/recompute';
import { layerReports, LayerReport } from '../../onnx/report';
import { writeFileAtomic } from '../../onnx/atomic';
import { PopulationEstimatorKind } from '../../population';
import { PassOptions } from '../../onnx/calibrate';

/** The help text of `rebatch recompute`. */
export const usage = `rebatch recompute MODEL.onnx --data FILE [options]

Recomputes the population statistics of every BatchNormalization node (PreciseBN):
the model runs over the data with each BN normalizing by its batch's statistics, and
the batch statistics are aggregated per channel. Only the BN mean and variance change.

  --data FILE            .npy, or .npz (FILE.npz with one array, or FILE.npz:KEY); first axis = samples
  --input NAME           the model input the data feeds (needed when the model has several)
  --batch-size N         samples per batch (default 32); batches are consecutive slices in file order
  --max-samples N        use at most the first N samples
  --drop-last            leave out a last batch smaller than --batch-size
  --estimator E          pooled (default: every sample weighted equally) or batch-average
  --out OUT.onnx         output model (default MODEL.precise.onnx); the input is never overwritten
  --stats-out FILE.json  per-layer statistics: stored (EMA) and new mean/var, drift
  --threads N            onnxruntime threads (default: its own choice)
  --json                 machine-readable result on stdout
  --debug                stack traces on errors
`;

/** What a recompute did, as `--json` prints it. */
export interface RecomputeResult {
  command: 'recompute';
  model: string;
  output: string;
  data: string;
  input: string;
  estimator: PopulationEstimatorKind;
  batchSize: number;
  samples: number;
  batches: number;
  statsOut: string | null;
  layers: { name: string; channels: number; drift: number; meanShift: number; stdRatio: number }[];
}

/**
 * Recomputes and writes the model; returns the result and the full layer reports.
 * Shared by the command and the demo.
 */
export async function recompute(modelFile: string, dataSpec: string, pass: PassOptions, estimator: PopulationEstimatorKind,
  out: string, io: Io, quiet = false): Promise<{ result: RecomputeResult; layers: LayerReport[] }> {
  const { model, bns } = loadBatchNormModel(modelFile);
  const progress = new Progress(io, 'recompute', !quiet && io.stderrIsTTY);
  const r = await passOverData(model, bns, dataSpec, { ...pass, estimator, onProgress: (d, t) => progress.update(d, t) }, (note) => {
    if (!quiet) io.err(`note: ${note}\n`);
  }).finally(() => progress.done());
  const layers = layerReports(model, bns, r.populations, r.samples);
  writeModel(model, withPopulationStats(model, bns, r.populations), out);
  return {
    layers,
    result: {
      command: 'recompute', model: modelFile, output: out, data: dataSpec, input: r.input, estimator,
      batchSize: pass.batchSize, samples: r.samples, batches: r.batches, statsOut: null,
      layers: layers.map((l) => ({ name: l.name, channels: l.channels, drift: l.drift, meanShift: l.meanShift, stdRatio: l.stdRatio })),
    },
  };
}

/** The full statistics file `--stats-out` writes. */
export function statsDocument(result: RecomputeResult, layers: LayerReport[]): object {
  const { command: _c, statsOut: _s, layers: _l, ...rest } = result;
  return { rebatch: 'statistics', version: 1, ...rest, layers };
}

/** Runs `rebatch recompute`. */
export async function run(args: string[], io: Io): Promise<number> {
  const p = parse(args, { ...DATA_OPTIONS, out: { type: 'string' }, 'stats-out': { type: 'string' } }, 'recompute');
  if (p.values.help) { io.out(usage); return 0; }
  const modelFile = oneModel(p, 'recompute');
  const dataSpec = requiredString(p, 'data', 'recompute');
  const estimator = estimatorOption(p);
  const pass = passOptions(p);
  const out = typeof p.values.out === 'string' ? p.values.out : defaultOutput(modelFile);
  const statsOut = typeof p.values['stats-out'] === 'string' ? p.values['stats-out'] : null;
  if (!fs.existsSync(modelFile)) throw new CliError(`${modelFile}: no such model file`);
  const { result, layers } = await recompute(modelFile, dataSpec, pass, estimator, out, io, p.values.json === true);
  if (statsOut) {
    writeFileAtomic(statsOut, Buffer.from(JSON.stringify(statsDocument(result, layers), null, 1)));
    result.statsOut = statsOut;
  }
  if (p.values.json) {
    io.out(`${JSON.stringify(result, null, 2)}\n`);
    return 0;
  }
  const last = result.samples % pass.batchSize;
  io.out(`${modelFile}: ${layers.length} BatchNormalization node(s); ${result.samples} samples from ${dataSpec} ` +
    `in ${result.batches} batch(es) of ${pass.batchSize}${last ? ` (last ${last})` : ''}, estimator ${estimator}\n`);
  io.out('stored (EMA) vs recomputed statistics, layers that drifted most:\n');
  io.out(driftTable(layers));
  if (statsOut) io.out(`wrote ${statsOut}\n`);
  io.out(`wrote ${out} (only the BN mean and variance tensors changed)\n`);
  return 0;
}

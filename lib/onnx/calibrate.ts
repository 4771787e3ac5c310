// The statistics pass: runs the instrumented model (every BN in training mode,
// every BN input exposed) batch by batch with onnxruntime, and accumulates
// each BN input's per-batch moments, computed by rebatch's kernels, in one
// PopulationEstimator per BN node (the same one the layers' PreciseBN uses).
import type * as Ort from 'onnxruntime-node';
import { loadOrt } from './ort';
import { moments } from '../functional';
import { DataError, SampleReader } from '../data/open';
import { BnNode } from './batchnorm';
import { instrument } from './graph-rewrite';
import { DataType, ModelError, OnnxModel, ValueRef } from './model';
import { PopulationEstimator, PopulationEstimatorKind } from '../population';

/** How the data is cut into batches and fed. */
export interface PassOptions {
  /** Graph input the data feeds; may be omitted when the model has one input. */
  input?: string;
  batchSize: number;
  /** Use at most this many samples (from the start). */
  maxSamples?: number;
  /** Leave out a last batch smaller than batchSize. */
  dropLast?: boolean;
  /**
   * The estimator the per-node statistics finalize with (default 'pooled'). Both estimators'
   * sums are kept either way; this is what `rebatch stats` records for `merge`.
   */
  estimator?: PopulationEstimatorKind;
  /** onnxruntime intra-op threads (0: its default). */
  threads?: number;
  /** Called after each batch with samples done and samples planned. */
  onProgress?: (done: number, total: number) => void;
}

/** The result of a pass: the statistics of each BN node's input, in the order given. */
export interface PassResult {
  populations: PopulationEstimator[];
  samples: number;
  batches: number;
  input: string;
}

/** The graph input the data feeds, checked against the model. */
export function chooseInput(model: OnnxModel, name: string | undefined): ValueRef {
  if (name !== undefined) {
    const v = model.inputs.find((i) => i.name === name);
    if (!v) throw new ModelError(`${model.file}: no input named '${name}'; the model's inputs are ${model.inputs.map((i) => `'${i.name}'`).join(', ')}`);
    return v;
  }
  if (model.inputs.length !== 1) {
    throw new ModelError(`${model.file}: the model has ${model.inputs.length} inputs (${model.inputs.map((i) => `'${i.name}'`).join(', ')}); say which one the data feeds with --input NAME`);
  }
  return model.inputs[0];
}

/** Checks that the data's sample shape fits the model input (fixed dims must agree; symbolic ones match anything). */
export function checkSampleShape(reader: SampleReader, input: ValueRef, file: string): void {
  if (!input.shape) return;
  const want = input.shape.slice(1);
  const got = reader.sampleShape;
  const fits = want.length === got.length && want.every((d, i) => typeof d !== 'number' || d === got[i]);
  if (!fits) {
    const fmt = (dims: (number | string | null)[]) => `[${dims.map((d) => (d === null ? '?' : d)).join(', ')}]`;
    throw new DataError(`${reader.label}: samples have shape ${fmt(got)}, but input '${input.name}' of ${file} expects ${fmt(want)} ` +
      `(full input shape ${fmt(input.shape)}, the first axis being the batch)`);
  }
}

/** The batch sizes of the pass, in order: consecutive slices, the last partial one unless dropLast. */
export function planBatches(count: number, options: PassOptions): number[] {
  const total = Math.min(count, options.maxSamples ?? Infinity);
  const sizes: number[] = [];
  for (let start = 0; start < total; start += options.batchSize) sizes.push(Math.min(options.batchSize, total - start));
  if (options.dropLast && sizes.length > 0 && sizes[sizes.length - 1] < options.batchSize) sizes.pop();
  return sizes;
}

/** Index of the first non-finite value, or -1. */
function firstNonFinite(x: Float32Array): number {
  for (let i = 0; i < x.length; i++) if (!Number.isFinite(x[i])) return i;
  return -1;
}

const FEEDABLE = [DataType.FLOAT, DataType.FLOAT16, DataType.DOUBLE, 0];

/** Opens an onnxruntime session on model bytes, with graph optimizations off so Conv+BN are not fused. */
export async function openSession(bytes: Uint8Array, threads = 0, optimize = false): Promise<Ort.InferenceSession> {
  return loadOrt().InferenceSession.create(bytes, {
    graphOptimizationLevel: optimize ? 'all' : 'disabled',
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    logSeverityLevel: 3,
  });
}

/**
 * Runs the pass over `reader` and returns each BN's accumulated statistics.
 * During the pass every BN normalizes with its batch's own statistics.
 */
export async function collectStatistics(model: OnnxModel, bns: BnNode[], reader: SampleReader, options: PassOptions): Promise<PassResult> {
  loadOrt(); // fail before any work when onnxruntime-node is missing
  const input = chooseInput(model, options.input);
  checkSampleShape(reader, input, model.file);
  const sizes = planBatches(reader.count, options);
  if (sizes.length === 0) {
    throw new DataError(reader.count === 0 ? `${reader.label}: empty data (0 samples)`
      : `${reader.label}: no batch to run: ${reader.count} sample(s) with --batch-size ${options.batchSize} and --drop-last`);
  }
  if (!FEEDABLE.includes(input.elemType)) {
    throw new DataError(`${reader.label}: input '${input.name}' has element type ${input.elemType}; float32, float16 or float64 expected`);
  }
  const inst = instrument(model, bns, input.name);
  let session: Ort.InferenceSession;
  try {
    session = await openSession(inst.bytes, options.threads);
  } catch (e) {
    throw new ModelError(`${model.file}: onnxruntime cannot load the model (${(e as Error).message.split('\n')[0]})`);
  }
  const populations = bns.map(() => new PopulationEstimator({ estimator: options.estimator }));
  const total = sizes.reduce((a, b) => a + b, 0);
  let done = 0;
  try {
    for (const n of sizes) {
      const data = await reader.read(n);
      const bad = firstNonFinite(data);
      const sampleSize = data.length / n;
      if (bad >= 0) throw new DataError(`${reader.label}: sample ${done + Math.floor(bad / sampleSize)} has a non-finite value (${data[bad]}); expected finite numbers`);
      const feeds = { [inst.feedName]: new (loadOrt().Tensor)('float32', data, [n, ...reader.sampleShape]) };
      let out: Ort.InferenceSession.OnnxValueMapType;
      try {
        out = await session.run(feeds);
      } catch (e) {
        throw new ModelError(`${model.file}: onnxruntime failed on samples ${done}..${done + n - 1} (${(e as Error).message.split('\n')[0]})`);
      }
      inst.xOutputs.forEach((name, k) => {
        const t = out[name] as Ort.Tensor;
        const dims = t.dims as number[];
        const perChannel = dims.slice(2).reduce((a, b) => a * b, dims[0]);
        if (dims.length < 2 || dims[1] !== bns[k].channels) {
          throw new ModelError(`${model.file}: node ${bns[k].label}: its input has shape [${dims.join(', ')}]; expected [N, ${bns[k].channels}, ...]`);
        }
        if (perChannel < 2) {
          throw new DataError(`${reader.label}: node ${bns[k].label}: a batch of ${n} sample(s) gives 1 value per channel, and training-mode BN needs more ` +
            '(as PyTorch: "Expected more than 1 value per channel when training"); use --drop-last or another --batch-size');
        }
        populations[k].add(moments(t.data as Float32Array, dims));
      });
      done += n;
      options.onProgress?.(done, total);
    }
  } finally {
    await session.release();
  }
  return { populations, samples: done, batches: sizes.length, input: input.name };
}

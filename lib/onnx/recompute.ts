// The library side of `rebatch recompute`, `stats` and `merge`: load a model's
// BN nodes, run the statistics pass over data, and write a model whose only
// change is the BN statistics.
import * as fs from 'fs';
import * as path from 'path';
import { openData } from '../data/open';
import { BnNode, findBatchNorms, foldedMessage } from './batchnorm';
import { collectStatistics, PassOptions, PassResult } from './calibrate';
import { ModelError, OnnxModel, parseModel, readModel } from './model';
import { PopulationEstimator } from '../population';
import { TensorUpdate, updateTensors } from './update';
import { writeFileAtomic } from './atomic';

/** Thrown when a model has no BN node to recompute (e.g. BN folded at export). */
export class NoBatchNormError extends ModelError {}

/** A model and its BN nodes; a model without BN is a {@link NoBatchNormError}. */
export function loadBatchNormModel(file: string): { model: OnnxModel; bns: BnNode[] } {
  const model = readModel(file);
  const bns = findBatchNorms(model);
  if (bns.length === 0) throw new NoBatchNormError(foldedMessage(model));
  return { model, bns };
}

/** Runs the statistics pass of `model` over the data named by `dataSpec`. */
export async function passOverData(model: OnnxModel, bns: BnNode[], dataSpec: string, options: PassOptions,
  onNotice?: (text: string) => void): Promise<PassResult> {
  const reader = await openData(dataSpec);
  try {
    if (reader.notice) onNotice?.(`${reader.label}: ${reader.notice}`);
    return await collectStatistics(model, bns, reader, options);
  } finally {
    await reader.close();
  }
}

/** The model bytes with each BN's mean and variance replaced by its population estimate. */
export function withPopulationStats(model: OnnxModel, bns: BnNode[], populations: PopulationEstimator[]): Uint8Array {
  const updates: TensorUpdate[] = [];
  bns.forEach((bn, k) => {
    const est = populations[k].finalize();
    updates.push({ tensor: bn.mean.tensor, values: est.mean }, { tensor: bn.variance.tensor, values: est.var });
  });
  return updateTensors(model, updates);
}

/** The default output name: MODEL.precise.onnx next to MODEL.onnx. */
export function defaultOutput(modelFile: string): string {
  return modelFile.replace(/(\.onnx)?$/i, '.precise.onnx');
}

/**
 * Writes `bytes` as the new model `out` (atomically). External data files the
 * model still references are copied next to `out` when it is in another folder.
 */
export function writeModel(model: OnnxModel, bytes: Uint8Array, out: string): void {
  if (path.resolve(out) === path.resolve(model.file)) throw new ModelError(`${out}: refusing to overwrite the input model; choose another --out`);
  const written = readModelLocations(bytes);
  const from = path.dirname(path.resolve(model.file));
  const to = path.dirname(path.resolve(out));
  if (from !== to) {
    for (const loc of written) {
      const src = path.resolve(from, loc);
      const dst = path.resolve(to, loc);
      if (fs.existsSync(dst)) {
        if (!fs.readFileSync(dst).equals(fs.readFileSync(src))) throw new ModelError(`${dst}: exists and differs from the model's external data ${src}; write the output elsewhere`);
        continue;
      }
      fs.mkdirSync(path.dirname(dst), { recursive: true });
      fs.copyFileSync(src, dst);
    }
  }
  writeFileAtomic(out, bytes);
}

/** External data locations a model's bytes reference. */
function readModelLocations(bytes: Uint8Array): Set<string> {
  const m = parseModel(bytes);
  const out = new Set<string>();
  for (const t of m.initializers.values()) if (t.external) out.add(t.external.location);
  return out;
}

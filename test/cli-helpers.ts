// Helpers for the CLI tests: run the CLI in-process, fixture paths, temp folders.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as ort from 'onnxruntime-node';
import { main } from '../lib/cli/main';
import { memoryIo } from '../lib/cli/io';
import { readAll } from '../lib/data/open';

export const FIX = path.join(__dirname, 'fixtures', 'onnx');
export const fix = (name: string): string => path.join(FIX, name);

export interface RefLayer {
  stored_mean: number[];
  stored_var: number[];
  pooled: { mean: number[]; var: number[] };
  batch_average: { mean: number[]; var: number[] };
  elements: number;
}
export interface Reference {
  batch_size: number;
  tiny: { bn: RefLayer[]; eval_pooled: number[][]; eval_stored: number[][] };
  mlp: { bn: RefLayer[]; eval_pooled: number[][]; eval_stored: number[][] };
}
export const reference: Reference = JSON.parse(fs.readFileSync(fix('reference.json'), 'utf8'));

/** Runs the CLI with `args`; returns exit code and captured output. */
export async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const io = memoryIo();
  const code = await main(args, io);
  return { code, stdout: io.stdout, stderr: io.stderr };
}

/** A fresh temporary folder (removed by the OS; tests write only small files). */
export function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'rebatch-test-'));
}

/** Worst relative error, |a − b| / max(|b|, floor). */
export function worstRel(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1e-3): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let w = 0;
  for (let i = 0; i < a.length; i++) w = Math.max(w, Math.abs(a[i] - b[i]) / Math.max(Math.abs(b[i]), floor));
  return w;
}

/** Runs a single-input model on the first `n` samples of an .npy; returns the flat output. */
export async function runModel(model: string, data: string, n: number, optimize = true): Promise<Float32Array> {
  const x = await readAll(data);
  const per = x.data.length / x.shape[0];
  const s = await ort.InferenceSession.create(model, { graphOptimizationLevel: optimize ? 'all' : 'disabled', logSeverityLevel: 3 });
  try {
    const out = await s.run({ [s.inputNames[0]]: new ort.Tensor('float32', x.data.slice(0, n * per), [n, ...x.shape.slice(1)]) });
    return (out[s.outputNames[0]] as ort.Tensor).data as Float32Array;
  } finally {
    await s.release();
  }
}

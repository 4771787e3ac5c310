// TensorFlow.js with its cpu (plain JS) or wasm backend: tf.batchNorm for
// eval, tf.moments + tf.batchNorm for training, tf.moments for moments. No
// backward (tfjs has no batch-norm gradient kernel; autodiff would time
// something else). Both backends broadcast the per-channel parameters by
// flat index modulo their size, i.e. channels last; for NCHW the parameters
// are expanded to [1, C, ...spatial] (inside the timed region for training).
// Single-threaded in Node.
import type { Case, Peer, PeerTiming } from './types';
import { channelParams, inputX, sizeOf } from '../data';
import { timeSync } from '../timing';

// The few parts of @tensorflow/tfjs used here, typed locally so the benchmark
// compiles without the package (it is optional: missing, the peer is skipped).
interface Tensor {
  reshape(shape: number[]): Tensor;
}
interface Tf {
  version: { tfjs: string };
  setBackend(name: string): Promise<boolean>;
  ready(): Promise<void>;
  tensor(values: Float32Array, shape: number[]): Tensor;
  tensor1d(values: Float32Array): Tensor;
  tidy(fn: () => Tensor | void): Tensor | void;
  dispose(tensors: Tensor[]): void;
  broadcastTo(t: Tensor, shape: number[]): Tensor;
  moments(x: Tensor, axes: number[]): { mean: Tensor; variance: Tensor };
  batchNorm(x: Tensor, mean: Tensor, variance: Tensor, offset: Tensor, scale: Tensor, eps: number): Tensor;
}

let tfModule: Tf | undefined;

export class TfjsPeer implements Peer {
  readonly name: string;
  private tf?: Tf;
  private versionString = '';

  constructor(private readonly backend: 'cpu' | 'wasm') {
    this.name = `tfjs-${backend}`;
  }

  async init(): Promise<string | null> {
    try {
      tfModule ??= require('@tensorflow/tfjs') as Tf;
      if (this.backend === 'wasm') require('@tensorflow/tfjs-backend-wasm');
      if (!(await tfModule.setBackend(this.backend))) return `tfjs backend '${this.backend}' did not initialize`;
      await tfModule.ready();
      this.tf = tfModule;
      const wasmVersion = this.backend === 'wasm' ? `, tfjs-backend-wasm ${require('@tensorflow/tfjs-backend-wasm/package.json').version}` : '';
      this.versionString = `@tensorflow/tfjs ${tfModule.version.tfjs}${wasmVersion}`;
      return null;
    } catch (e) {
      return `${this.name} unavailable (${(e as Error).message.split('\n')[0]})`;
    }
  }

  skip(c: Case): string | null {
    return c.op === 'backward-train' ? `${this.name}: no batch-norm backward kernel` : null;
  }

  async measure(c: Case): Promise<PeerTiming> {
    const tf = this.tf!;
    await tf.setBackend(this.backend);
    const channelsFirst = c.layout === 'NCHW' && c.shape.length > 2;
    const physical = channelsFirst || c.shape.length === 2 ? c.shape : [c.shape[0], ...c.shape.slice(2), c.shape[1]];
    const axes = channelsFirst ? [0, ...c.shape.slice(2).map((_, i) => i + 2)] : physical.slice(0, -1).map((_, i) => i);
    // Shape the per-channel values broadcast to: [1, C, ...spatial] (NCHW) or [C] (channels last).
    const paramShape = channelsFirst ? [1, ...c.shape.slice(1)] : [c.shape[1]];
    const perChannel = channelsFirst ? [1, c.shape[1], ...c.shape.slice(2).map(() => 1)] : [c.shape[1]];
    const expand = (t: Tensor) => (channelsFirst ? tf.broadcastTo(t.reshape(perChannel), paramShape) : t.reshape(paramShape));
    const p = channelParams(c.shape[1]);
    const x = tf.tensor(inputX(sizeOf(c.shape)), physical);
    const param = (v: Float32Array) => tf.tidy(() => expand(tf.tensor1d(v))) as Tensor;
    const weight = param(p.weight), bias = param(p.bias), mean = param(p.mean), variance = param(p.variance);
    const fns: Record<string, () => void> = {
      moments: () => tf.tidy(() => { tf.moments(x, axes); }),
      'forward-train': () => tf.tidy(() => {
        const m = tf.moments(x, axes);
        tf.batchNorm(x, expand(m.mean), expand(m.variance), bias, weight, 1e-5);
      }),
      'forward-eval': () => tf.tidy(() => { tf.batchNorm(x, mean, variance, bias, weight, 1e-5); }),
    };
    try {
      return { ...timeSync(fns[c.op], { budget: c.budget, minSamples: 3, warmup: 1 }), threads: 1 };
    } finally {
      tf.dispose([x, weight, bias, mean, variance]);
    }
  }

  async close(): Promise<void> {}

  version(): string {
    return this.versionString;
  }
}

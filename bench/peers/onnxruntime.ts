// onnxruntime-node's BatchNormalization (inference only; ONNX BN is channels
// first). Graph optimizations are disabled so the session runs the
// BatchNormalization kernel itself (with them on, a lone BN node stays a BN
// node anyway; the setting matters when BN follows a Conv, which it folds into).
// The output tensor is pre-allocated and passed as a fetch, so each run
// writes into the same buffer, like rebatch's `out`.
import { channelParams, inputX, output, sizeOf } from '../data';
import { batchNormModel } from './onnx_model';
import type { Case, Peer, PeerTiming } from './types';
import { timeAsync } from '../timing';

// The few parts of onnxruntime-node used here, typed locally so the benchmark
// compiles without the package (it is optional: missing, the peer is skipped).
interface OrtTensor {
  data: unknown;
}
interface OrtSession {
  run(feeds: Record<string, OrtTensor>, fetches: Record<string, OrtTensor>): Promise<unknown>;
  release(): Promise<void>;
}
interface Ort {
  Tensor: new (type: 'float32', data: Float32Array, dims: readonly number[]) => OrtTensor;
  InferenceSession: {
    create(model: Uint8Array, options: Record<string, unknown>): Promise<OrtSession>;
  };
}

export class OnnxRuntimePeer implements Peer {
  readonly name = 'onnxruntime';
  private ort?: Ort;
  private versionString = '';

  async init(): Promise<string | null> {
    try {
      this.ort = require('onnxruntime-node') as Ort;
      this.versionString = `onnxruntime-node ${require('onnxruntime-node/package.json').version}`;
      return null;
    } catch (e) {
      return `onnxruntime-node is not installed (${(e as Error).message.split('\n')[0]})`;
    }
  }

  skip(c: Case): string | null {
    if (c.op !== 'forward-eval') return 'onnxruntime: BatchNormalization inference only';
    if (c.layout === 'NHWC' && c.shape.length > 2) return 'onnxruntime: ONNX BatchNormalization is channels-first only';
    return null;
  }

  async measure(c: Case): Promise<PeerTiming> {
    const ort = this.ort!;
    const p = channelParams(c.shape[1]);
    const model = batchNormModel({ shape: c.shape, weight: p.weight, bias: p.bias, mean: p.mean, variance: p.variance, epsilon: 1e-5 });
    const session = await ort.InferenceSession.create(model, {
      graphOptimizationLevel: 'disabled',
      intraOpNumThreads: c.threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
    });
    try {
      const n = sizeOf(c.shape);
      const feeds = { X: new ort.Tensor('float32', inputX(n), c.shape) };
      const fetches = { Y: new ort.Tensor('float32', output(n), c.shape) };
      const t = await timeAsync(() => session.run(feeds, fetches), { budget: c.budget });
      return { ...t, threads: c.threads };
    } finally {
      await session.release();
    }
  }

  async close(): Promise<void> {}

  version(): string {
    return this.versionString;
  }
}

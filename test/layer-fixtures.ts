// Loading test/fixtures/layers.json (made by make_layer_fixtures.py with
// PyTorch 1.13 in float64) and checking a layer step against it.
// Tolerances, as for the functional fixtures: outputs are float32, so y within
// 2e-5 + 1e-5·|y|; running statistics (float32) within 1e-6 relative + 1e-7;
// gradients, which sum over the batch, within 1e-4 relative + 2e-5.
import * as fs from 'fs';
import * as path from 'path';
import type { Layout } from '../lib';
import { expectClose } from './helpers';

export type State = Record<string, number[] | number>;

export interface Step {
  mode: 'train' | 'eval';
  shape: number[];
  x: number[];
  dy: number[];
  y: number[];
  dx: number[];
  state: State;
  weight_grad: number[] | null;
  bias_grad: number[] | null;
  sizes?: number[] | null;
  domain?: string;
}

export interface Sequence {
  name: string;
  layout: Layout;
  initial: State;
  steps: Step[];
  [key: string]: unknown;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const fixtures: any = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'layers.json'), 'utf8'));

export const TOL = {
  y: [1e-5, 2e-5] as const,
  stats: [1e-6, 1e-7] as const,
  grad: [1e-4, 2e-5] as const,
};

/** Compares every numeric entry of a layer state with the fixture's (counts exactly). */
export function expectState(got: State, want: State, what: string): void {
  expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
  for (const [key, value] of Object.entries(want)) {
    if (typeof value === 'number') expect([what, key, got[key]]).toEqual([what, key, value]);
    else expectClose(got[key] as number[], value, TOL.stats[0], TOL.stats[1], `${what} ${key}`);
  }
}

export interface Steppable {
  training: boolean;
  train(mode?: boolean): unknown;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  forward(...args: any[]): Float32Array;
  backward(dy: Float32Array): Float32Array;
  state(): State;
  weightGrad?: Float32Array | null;
  biasGrad?: Float32Array | null;
}

/** Runs one fixture step on a layer: forward, backward, state and accumulated gradients. */
export function checkStep(layer: Steppable, step: Step, what: string, forward?: (x: Float32Array) => Float32Array): void {
  layer.train(step.mode === 'train');
  const x = Float32Array.from(step.x);
  const y = forward ? forward(x) : layer.forward(x, step.shape);
  expectClose(y, step.y, TOL.y[0], TOL.y[1], `${what} y`);
  const dx = layer.backward(Float32Array.from(step.dy));
  expectClose(dx, step.dx, TOL.grad[0], TOL.grad[1], `${what} dx`);
  expectState(layer.state(), step.state, what);
  if (step.weight_grad) expectClose(layer.weightGrad!, step.weight_grad, TOL.grad[0], TOL.grad[1], `${what} weight grad`);
  if (step.bias_grad) expectClose(layer.biasGrad!, step.bias_grad, TOL.grad[0], TOL.grad[1], `${what} bias grad`);
}

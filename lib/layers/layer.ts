// What every normalization layer shares: the training flag, gradient reset,
// and a state made of PyTorch-named tensors.
import { checkBoolean } from '../validate';

/**
 * A layer's state as a plain JSON-able object with PyTorch's names:
 * `weight`, `bias`, `running_mean`, `running_var` as number arrays and
 * `num_batches_tracked` as a number. Domain-specific layers prefix their
 * statistics with the domain (`'source.running_mean'`).
 */
export type LayerState = Record<string, number[] | number>;

/** What `loadState` accepts: the output of `state()`, or typed arrays in place of the number arrays. */
export type LayerStateInput = Record<string, ArrayLike<number> | number | bigint>;

/**
 * Base class of the normalization layers: a `training` flag switched with
 * `train()` / `eval()` as in PyTorch, `forward` / `backward`, and
 * `state()` / `loadState()`.
 *
 * @example
 * const bn = new BatchNorm(16);
 * bn.eval();            // running statistics from now on
 * bn.train();           // batch statistics and running-statistics updates
 * bn.training;          // true
 */
export abstract class NormLayer {
  /** true: training mode (PyTorch's `module.training`). New layers start in training mode. */
  training = true;

  /** Sets training mode (default true) and returns the layer. */
  train(mode = true): this {
    this.training = checkBoolean(mode, 'mode');
    return this;
  }

  /** Inference mode; the same as `train(false)`. */
  eval(): this {
    return this.train(false);
  }

  /** Gradient of the output with respect to the input of the last `forward`. */
  abstract backward(dy: Float32Array): Float32Array;

  /** The layer's tensors under PyTorch's names, as a JSON-able object. */
  abstract state(): LayerState;

  /** Loads tensors saved by `state()` (or PyTorch's state_dict of the same module); strict about names and sizes. */
  abstract loadState(state: LayerStateInput): void;

  /**
   * The PyTorch shape of each state entry, for safetensors: `[length]` for
   * arrays and `[]` for counts, unless a layer says otherwise (LayerNorm).
   */
  stateShapes(): Record<string, number[]> {
    return Object.fromEntries(Object.entries(this.state()).map(([k, v]) => [k, typeof v === 'number' ? [] : [v.length]]));
  }

  /** Sets accumulated parameter gradients to zero (a no-op for layers without parameters). */
  zeroGrad(): void {}
}

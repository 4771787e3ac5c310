// Finds the BatchNormalization nodes of a model and where their parameters
// live (initializers, Constant nodes, or either behind Identity nodes).
import {
  attrFloat, attrInt, ModelError, nodeLabel, NodeRef, OnnxModel, producers, readTensorValues, resolveConstant,
  TensorSource, tensorSize,
} from './model';

/** One BatchNormalization node and its parameters. */
export interface BnNode {
  node: NodeRef;
  /** The node's name, or a readable stand-in when it has none. */
  label: string;
  /** Tensor name of the input X. */
  x: string;
  channels: number;
  eps: number;
  /** ONNX momentum (weight of the old value: running = momentum·running + (1 − momentum)·batch); default 0.9. */
  momentum: number;
  trainingMode: boolean;
  scale: TensorSource;
  bias: TensorSource;
  mean: TensorSource;
  variance: TensorSource;
}

/** The stored (EMA) statistics of a BN node, as float64. */
export function storedStats(model: OnnxModel, bn: BnNode): { mean: Float64Array; variance: Float64Array } {
  return { mean: readTensorValues(model, bn.mean.tensor), variance: readTensorValues(model, bn.variance.tensor) };
}

/**
 * All BatchNormalization nodes of the main graph, in graph order. A parameter
 * that is computed rather than stored is an error naming the node, since its
 * statistics could not be rewritten.
 */
export function findBatchNorms(model: OnnxModel): BnNode[] {
  const producedBy = producers(model);
  const out: BnNode[] = [];
  for (const node of model.nodes) {
    if (node.opType !== 'BatchNormalization' || node.domain !== '') continue;
    const label = nodeLabel(node);
    if (node.inputs.length < 5) throw new ModelError(`${model.file}: node ${label}: BatchNormalization has ${node.inputs.length} inputs; expected 5`);
    const sources = ['scale', 'B', 'input_mean', 'input_var'].map((role, k) => {
      const name = node.inputs[k + 1];
      const s = resolveConstant(model, name, producedBy);
      if (!s) {
        throw new ModelError(`${model.file}: node ${label}: its ${role} '${name}' is computed in the graph, not stored as an ` +
          'initializer or Constant; rebatch can only rewrite stored statistics');
      }
      return s;
    });
    const channels = tensorSize(sources[2].tensor);
    sources.forEach((s, k) => {
      if (tensorSize(s.tensor) !== channels) {
        throw new ModelError(`${model.file}: node ${label}: ${['scale', 'B', 'input_mean', 'input_var'][k]} has ${tensorSize(s.tensor)} values; expected ${channels} (one per channel)`);
      }
    });
    out.push({
      node, label, x: node.inputs[0], channels,
      eps: attrFloat(model, node, 'epsilon', 1e-5),
      momentum: attrFloat(model, node, 'momentum', 0.9),
      trainingMode: attrInt(model, node, 'training_mode', 0) === 1,
      scale: sources[0], bias: sources[1], mean: sources[2], variance: sources[3],
    });
  }
  checkSharedStatistics(model, out);
  return out;
}

/** Two BN nodes whose statistics are one tensor would get two different values: refuse. */
function checkSharedStatistics(model: OnnxModel, bns: BnNode[]): void {
  const owner = new Map<string, string>();
  for (const bn of bns) {
    for (const s of [bn.mean, bn.variance]) {
      const key = s.tensor.path.join('.');
      const other = owner.get(key);
      if (other !== undefined && other !== bn.label) {
        throw new ModelError(`${model.file}: nodes ${other} and ${bn.label} share the statistics tensor '${s.tensor.name}'; ` +
          'rebatch cannot give them different values');
      }
      owner.set(key, bn.label);
    }
  }
}

/** A note on how BN may have been folded away, for models with no BN node. */
export interface FoldedHint {
  convs: number;
  gemms: number;
  convsWithBias: number;
}

/** Counts the layers a BN may have been folded into, to explain an empty result. */
export function foldedHint(model: OnnxModel): FoldedHint {
  let convs = 0;
  let gemms = 0;
  let convsWithBias = 0;
  for (const n of model.nodes) {
    if (n.opType === 'Conv' || n.opType === 'ConvTranspose') {
      convs++;
      if (n.inputs.length >= 3 && n.inputs[2]) convsWithBias++;
    } else if (n.opType === 'Gemm' || n.opType === 'MatMul') gemms++;
  }
  return { convs, gemms, convsWithBias };
}

/** The message for a model whose BN nodes were folded away at export: how to re-export with BN kept. */
export function foldedMessage(model: OnnxModel): string {
  const h = foldedHint(model);
  const looks = h.convsWithBias > 0
    ? ` It has ${h.convs} Conv node(s), ${h.convsWithBias} with a bias: BN was most likely folded into them at export.`
    : '';
  return `${model.file}: no BatchNormalization node: nothing to recompute.${looks} ` +
    'Re-export with BN kept: put the model in eval() and call torch.onnx.export(model, x, "model.onnx", ' +
    'training=torch.onnx.TrainingMode.PRESERVE) (tf2onnx: disable its optimizers).';
}

// Folds BatchNormalization into the Conv, ConvTranspose or Gemm before it:
// y = (conv(x) − μ)·a + β with a = γ/√(var + eps) becomes conv'(x) with
// W' = W·a per output channel and b' = (b − μ)·a + β. Only where the BN is
// the layer's only consumer (otherwise the unnormalized output is still needed).
import { applyEdit, concat, Field, fieldString, lenField, MessageEdit, parseFields } from './protobuf';
import { BnNode, findBatchNorms } from './batchnorm';
import {
  attrFloat, attrInt, consumers, DataType, F, NodeRef, OnnxModel, producers, readTensorValues, resolveConstant, tensorSize,
} from './model';
import { encodeAttribute, encodeTensor } from './encode';

/** What happened to one BN node. */
export interface FoldOutcome {
  bn: string;
  /** The layer it was folded into, or null. */
  into: string | null;
  /** Why it was left, when it was. */
  reason?: string;
}

const FOLDABLE = ['Conv', 'ConvTranspose', 'Gemm'];

/** The per-output-channel scale a = γ/√(var + eps) and shift β − μ·a of a BN. */
function affine(model: OnnxModel, bn: BnNode): { a: Float64Array; mu: Float64Array; beta: Float64Array } {
  const gamma = readTensorValues(model, bn.scale.tensor);
  const beta = readTensorValues(model, bn.bias.tensor);
  const mu = readTensorValues(model, bn.mean.tensor);
  const v = readTensorValues(model, bn.variance.tensor);
  return { a: gamma.map((g, c) => g / Math.sqrt(v[c] + bn.eps)), mu, beta };
}

/** A name not used in the model yet. */
function freshName(taken: Set<string>, base: string): string {
  let name = base;
  for (let i = 1; taken.has(name); i++) name = `${base}_${i}`;
  taken.add(name);
  return name;
}

interface Plan {
  bn: BnNode;
  layer: NodeRef;
  weight: { name: string; dims: number[]; type: number; values: Float64Array };
  bias: { name: string; dims: number[]; type: number; values: Float64Array };
  /** Gemm only: beta is set to 1 (the bias already includes it). */
  resetBeta: boolean;
}

/** Why `bn` cannot be folded into its producer, or the plan to do it. */
function planFold(model: OnnxModel, bn: BnNode, producedBy: Map<string, NodeRef>, usedBy: Map<string, NodeRef[]>,
  taken: Set<string>): Plan | string {
  const layer = producedBy.get(bn.x);
  if (!layer || !FOLDABLE.includes(layer.opType) || layer.domain !== '') return `its input comes from ${layer ? layer.opType : 'a graph input'}, not Conv, ConvTranspose or Gemm`;
  if ((usedBy.get(bn.x) ?? []).length !== 1 || model.outputs.some((o) => o.name === bn.x)) return `the output of ${layer.name || layer.opType} is also used elsewhere`;
  if (bn.node.outputs.slice(1).some((o) => o && usedBy.has(o))) return 'its extra (statistics) outputs are used';
  const w = resolveConstant(model, layer.inputs[1], producedBy);
  if (!w) return `the weight of ${layer.name || layer.opType} is computed, not stored`;
  const b = layer.inputs[2] ? resolveConstant(model, layer.inputs[2], producedBy) : null;
  if (layer.inputs[2] && !b) return `the bias of ${layer.name || layer.opType} is computed, not stored`;
  const { a, mu, beta } = affine(model, bn);
  const m = bn.channels;
  const W = readTensorValues(model, w.tensor);
  const dims = w.tensor.dims;
  let bias = b ? readTensorValues(model, b.tensor) : new Float64Array(m);
  let biasDims = b ? b.tensor.dims : [m];
  let resetBeta = false;
  if (layer.opType === 'Conv') {
    if (dims[0] !== m) return `Conv weight has ${dims[0]} output channels; the BN has ${m}`;
    const per = W.length / m;
    for (let i = 0; i < W.length; i++) W[i] *= a[Math.floor(i / per)];
  } else if (layer.opType === 'ConvTranspose') {
    const groups = attrInt(model, layer, 'group', 1);
    const perGroupOut = dims[1];
    if (perGroupOut * groups !== m) return `ConvTranspose gives ${perGroupOut * groups} channels; the BN has ${m}`;
    const cin = dims[0];
    const k = W.length / (cin * perGroupOut);
    for (let ci = 0; ci < cin; ci++) {
      const g = Math.floor(ci / (cin / groups));
      for (let j = 0; j < perGroupOut; j++) {
        const s = a[g * perGroupOut + j];
        for (let q = 0; q < k; q++) W[(ci * perGroupOut + j) * k + q] *= s;
      }
    }
  } else {
    // Gemm: Y = alpha·A'·B' + beta·C; output channels are the columns of Y.
    if (dims.length !== 2) return 'Gemm weight is not 2-D';
    const transB = attrInt(model, layer, 'transB', 0) === 1;
    const [rows, cols] = dims;
    if ((transB ? rows : cols) !== m) return `Gemm gives ${transB ? rows : cols} channels; the BN has ${m}`;
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) W[r * cols + c] *= a[transB ? r : c];
    const gemmBeta = attrFloat(model, layer, 'beta', 1);
    if (b) {
      const n = tensorSize(b.tensor);
      if (n === 1) {
        bias = new Float64Array(m).fill(bias[0]);
        biasDims = [m];
      } else if (n % m !== 0 || b.tensor.dims[b.tensor.dims.length - 1] !== m) return 'Gemm bias does not broadcast along the output channels';
    }
    bias = bias.map((v) => v * gemmBeta);
    resetBeta = layer.attributes.has('beta') && gemmBeta !== 1;
  }
  const folded = bias.map((v, i) => (v - mu[i % m]) * a[i % m] + beta[i % m]);
  const type = w.tensor.dataType;
  const base = bn.node.outputs[0];
  return {
    bn, layer, resetBeta,
    weight: { name: freshName(taken, `${base}__folded_weight`), dims, type, values: W },
    bias: { name: freshName(taken, `${base}__folded_bias`), dims: biasDims, type: b ? b.tensor.dataType : type, values: folded },
  };
}

/** The layer node re-encoded with new inputs/outputs; its other fields copied as they are. */
function rewriteLayer(model: OnnxModel, plan: Plan): Uint8Array {
  const f = model.graphFields[plan.layer.fieldIndex];
  const fields = parseFields(model.bytes, f.valueStart, f.end);
  const inputs = [...plan.layer.inputs];
  inputs[1] = plan.weight.name;
  inputs[2] = plan.bias.name;
  const outputs = [...plan.bn.node.outputs.slice(0, 1), ...plan.layer.outputs.slice(1)];
  const parts: Uint8Array[] = [...inputs.map((i) => lenField(F.node.input, i)), ...outputs.map((o) => lenField(F.node.output, o))];
  const betaIndex = plan.layer.attributes.get('beta')?.index;
  fields.forEach((x: Field, i: number) => {
    if (x.num === F.node.input || x.num === F.node.output) return;
    if (plan.resetBeta && i === betaIndex) parts.push(lenField(F.node.attribute, encodeAttribute('beta', { kind: 'float', value: 1 })));
    else parts.push(model.bytes.subarray(x.start, x.end));
  });
  return lenField(F.graph.node, concat(parts));
}

/**
 * The model with every foldable BN folded; other nodes and tensors are kept
 * (initializers that only the folded layers used are removed).
 */
export function foldModel(model: OnnxModel): { bytes: Uint8Array; outcomes: FoldOutcome[] } {
  const bns = findBatchNorms(model);
  const producedBy = producers(model);
  const usedBy = consumers(model);
  const taken = new Set<string>([...producedBy.keys(), ...usedBy.keys(), ...model.initializers.keys()]);
  const outcomes: FoldOutcome[] = [];
  const plans: Plan[] = [];
  for (const bn of bns) {
    const plan = planFold(model, bn, producedBy, usedBy, taken);
    if (typeof plan === 'string') outcomes.push({ bn: bn.label, into: null, reason: plan });
    else {
      plans.push(plan);
      outcomes.push({ bn: bn.label, into: plan.layer.name || plan.layer.opType });
    }
  }
  const graph = new MessageEdit();
  const removedNodes = new Set<number>();
  for (const plan of plans) {
    graph.replace.set(plan.bn.node.fieldIndex, new Uint8Array(0));
    removedNodes.add(plan.bn.node.fieldIndex);
    graph.replace.set(plan.layer.fieldIndex, rewriteLayer(model, plan));
    for (const t of [plan.weight, plan.bias]) {
      const type = t.type === DataType.FLOAT16 || t.type === DataType.DOUBLE ? t.type : DataType.FLOAT;
      graph.append.push(lenField(F.graph.initializer, encodeTensor(t.name, type, t.dims, t.values)));
    }
  }
  // Initializers no remaining node reads any more (the old weights and the BN parameters) are dropped.
  const stillRead = new Set<string>(model.outputs.map((o) => o.name));
  const replacedLayers = new Set(plans.map((p) => p.layer.fieldIndex));
  for (const n of model.nodes) {
    if (removedNodes.has(n.fieldIndex) || replacedLayers.has(n.fieldIndex)) continue;
    n.inputs.forEach((i) => stillRead.add(i));
  }
  for (const p of plans) p.layer.inputs.slice(3).forEach((i) => stillRead.add(i));
  const candidates = new Set<string>();
  for (const p of plans) {
    [p.layer.inputs[1], p.layer.inputs[2], ...p.bn.node.inputs.slice(1)].forEach((i) => i && candidates.add(i));
  }
  for (const name of candidates) {
    const init = model.initializers.get(name);
    if (!init || stillRead.has(name)) continue;
    graph.replace.set(init.path[1], new Uint8Array(0));
    // Before IR 4 an initializer was also listed as a graph input: drop that entry too.
    model.graphFields.forEach((f, i) => {
      if (f.num !== F.graph.input) return;
      const nameField = parseFields(model.bytes, f.valueStart, f.end).find((x) => x.num === F.valueInfo.name);
      if (nameField && fieldString(model.bytes, nameField) === name) graph.replace.set(i, new Uint8Array(0));
    });
  }
  const edit = new MessageEdit();
  if (plans.length) edit.children.set(model.graphIndex, graph);
  return { bytes: applyEdit(model.bytes, edit), outcomes };
}

// Builds the in-memory model the recompute pass runs: every BatchNormalization
// becomes its training-mode computation in standard ops (so each BN normalizes
// with its batch's statistics, as in a train() forward), and each BN's input X
// becomes a graph output (as float32) for rebatch's own `moments`. Nodes not
// needed for those outputs are dropped, and so are the inputs they alone used.
import { applyEdit, concat, lenField, MessageEdit } from './protobuf';
import { BnNode } from './batchnorm';
import { DataType, defaultOpset, externalTensorBytes, F, ModelError, OnnxModel } from './model';
import { encodeNode, encodeTensor, encodeValueInfo, NewNode } from './encode';

/** The instrumented model and the graph output that carries each BN's input. */
export interface Instrumented {
  bytes: Uint8Array;
  /** Output names, one per BN node, in the order of `bns`. */
  xOutputs: string[];
  /** Graph inputs the instrumented model still needs. */
  inputs: string[];
  /** The graph input to feed, always float32: the data input itself, or a float32 stand-in cast to its type. */
  feedName: string;
}

const PREFIX = '__rebatch_';

/**
 * The training-mode BN of `bn` in standard ops, rank-agnostic: X is reshaped
 * to [N, C, S] (Reshape's 0 keeps a dim), reduced over axes 0 and 2, and the
 * result reshaped back to X's shape. Computed in float32 and cast back.
 */
function trainingBnNodes(bn: BnNode, k: number, opset: number, castBackType: number): NewNode[] {
  const p = `${PREFIX}bn${k}_`;
  const reduce = (input: string, output: string): NewNode => (opset >= 18
    ? { opType: 'ReduceMean', inputs: [input, `${PREFIX}axes02`], outputs: [output], attributes: { keepdims: { kind: 'int', value: 1 } } }
    : {
      opType: 'ReduceMean', inputs: [input], outputs: [output],
      attributes: { axes: { kind: 'ints', value: [0, 2] }, keepdims: { kind: 'int', value: 1 } },
    });
  const toFloat = (input: string, output: string): NewNode => ({ opType: 'Cast', inputs: [input], outputs: [output], attributes: { to: { kind: 'int', value: DataType.FLOAT } } });
  const [x, scale, bias] = bn.node.inputs;
  const y = bn.node.outputs[0];
  const nodes: NewNode[] = [
    toFloat(x, `${p}x`),
    { opType: 'Shape', inputs: [x], outputs: [`${p}shape`] },
    { opType: 'Reshape', inputs: [`${p}x`, `${PREFIX}ncs`], outputs: [`${p}x3`] },
    reduce(`${p}x3`, `${p}mean`),
    { opType: 'Sub', inputs: [`${p}x3`, `${p}mean`], outputs: [`${p}d`] },
    { opType: 'Mul', inputs: [`${p}d`, `${p}d`], outputs: [`${p}d2`] },
    reduce(`${p}d2`, `${p}var`), // biased: the mean of squared deviations
    { opType: 'Add', inputs: [`${p}var`, `${p}eps`], outputs: [`${p}vareps`] },
    { opType: 'Sqrt', inputs: [`${p}vareps`], outputs: [`${p}std`] },
    { opType: 'Div', inputs: [`${p}d`, `${p}std`], outputs: [`${p}xhat`] },
    toFloat(scale, `${p}scale`),
    { opType: 'Reshape', inputs: [`${p}scale`, `${PREFIX}c1`], outputs: [`${p}scale2`] },
    { opType: 'Mul', inputs: [`${p}xhat`, `${p}scale2`], outputs: [`${p}ys`] },
    toFloat(bias, `${p}bias`),
    { opType: 'Reshape', inputs: [`${p}bias`, `${PREFIX}c1`], outputs: [`${p}bias2`] },
    { opType: 'Add', inputs: [`${p}ys`, `${p}bias2`], outputs: [`${p}y3`] },
  ];
  if (opset < 15 && castBackType === DataType.FLOAT) {
    nodes.push({ opType: 'Reshape', inputs: [`${p}y3`, `${p}shape`], outputs: [y] });
  } else {
    nodes.push({ opType: 'Reshape', inputs: [`${p}y3`, `${p}shape`], outputs: [`${p}yf`] });
    // From opset 15 X's type may differ from scale's: CastLike follows X. Before, they are one type.
    nodes.push(opset >= 15
      ? { opType: 'CastLike', inputs: [`${p}yf`, x], outputs: [y] }
      : { opType: 'Cast', inputs: [`${p}yf`], outputs: [y], attributes: { to: { kind: 'int', value: castBackType } } });
  }
  // Extra outputs (running or saved statistics) that something reads get the stored values;
  // only Y matters for the pass.
  bn.node.outputs.slice(1).forEach((o, i) => {
    if (o) nodes.push({ opType: 'Identity', inputs: [bn.node.inputs[3 + (i % 2)]], outputs: [o] });
  });
  return nodes;
}

/** One entry of the rewritten node list: an original node's bytes, or a new node. */
interface Item {
  inputs: string[];
  outputs: string[];
  bytes: Uint8Array;
  /** Field index of the original node this entry replaces or is. */
  slot: number;
  hasSubgraph: boolean;
}

/**
 * The instrumented model bytes. `input` is the graph input the data feeds;
 * graph inputs the BN inputs depend on besides it are an error.
 */
export function instrument(model: OnnxModel, bns: BnNode[], input: string): Instrumented {
  const opset = defaultOpset(model);
  const buf = model.bytes;
  const bnByField = new Map(bns.map((bn, k) => [bn.node.fieldIndex, k]));
  const items: Item[] = [];
  for (const node of model.nodes) {
    const k = bnByField.get(node.fieldIndex);
    if (k === undefined) {
      const f = model.graphFields[node.fieldIndex];
      // AttributeProto fields 6 (g) and 11 (graphs): If / Loop / Scan bodies.
      const hasSubgraph = [...node.attributes.values()].some((a) => a.fields.some((x) => x.num === 6 || x.num === 11));
      items.push({ inputs: node.inputs, outputs: node.outputs, bytes: buf.subarray(f.valueStart, f.end), slot: node.fieldIndex, hasSubgraph });
      continue;
    }
    const bn = bns[k];
    for (const n of trainingBnNodes(bn, k, opset, bn.scale.tensor.dataType)) {
      items.push({ inputs: n.inputs, outputs: n.outputs, bytes: encodeNode(n), slot: node.fieldIndex, hasSubgraph: false });
    }
  }
  const xOutputs = bns.map((_, k) => `${PREFIX}bn${k}_x`);
  const keep = neededItems(items, xOutputs);

  // Which graph inputs are still read.
  const read = new Set<string>();
  items.forEach((it, i) => { if (keep[i]) it.inputs.forEach((n) => read.add(n)); });
  const anySubgraph = items.some((it, i) => keep[i] && it.hasSubgraph);
  const needed = model.inputs.filter((v) => anySubgraph || read.has(v.name)).map((v) => v.name);
  const missing = needed.filter((n) => n !== input);
  if (missing.length > 0) {
    throw new ModelError(`${model.file}: the BatchNormalization inputs depend on graph input(s) ${missing.map((m) => `'${m}'`).join(', ')} ` +
      `besides '${input}'; rebatch feeds a single input`);
  }

  const graph = new MessageEdit();
  const bySlot = new Map<number, Uint8Array[]>();
  items.forEach((it, i) => {
    if (!keep[i]) return;
    const list = bySlot.get(it.slot) ?? [];
    list.push(lenField(F.graph.node, it.bytes));
    bySlot.set(it.slot, list);
  });
  // A float16 or float64 input is fed as float32 and cast inside the graph, so no
  // float16 typed array crosses into onnxruntime (Node 26's Float16Array breaks it).
  const fed = model.inputs.find((v) => v.name === input);
  const castInput = fed !== undefined && fed.elemType !== DataType.FLOAT && fed.elemType !== 0;
  const feedName = castInput ? `${PREFIX}input_f32` : input;
  if (castInput) {
    const cast = encodeNode({ opType: 'Cast', inputs: [feedName], outputs: [input], attributes: { to: { kind: 'int', value: fed.elemType } } });
    const first = model.nodes[0].fieldIndex;
    bySlot.set(first, [lenField(F.graph.node, cast), ...(bySlot.get(first) ?? [])]);
  }
  for (const node of model.nodes) graph.replace.set(node.fieldIndex, concat(bySlot.get(node.fieldIndex) ?? []));
  for (const o of model.outputs) graph.replace.set(o.fieldIndex, new Uint8Array(0));
  for (const v of model.inputs) if (!needed.includes(v.name)) graph.replace.set(v.fieldIndex, new Uint8Array(0));
  // The pass feeds batches of its own size: a batch dim fixed at export (PyTorch's default
  // without dynamic_axes) becomes symbolic, and the optional value_info entries, which may
  // repeat the fixed size, are dropped.
  const fedShape = fed?.shape ?? null;
  const batchFixed = fedShape !== null && fedShape.length > 0 && typeof fedShape[0] === 'number';
  if (fed && (batchFixed || castInput)) {
    const shape = fedShape ? [batchFixed ? `${PREFIX}N` : fedShape[0], ...fedShape.slice(1)] : undefined;
    graph.replace.set(fed.fieldIndex, lenField(F.graph.input, encodeValueInfo(feedName, castInput ? DataType.FLOAT : fed.elemType, shape)));
  }
  if (batchFixed) model.graphFields.forEach((f, i) => { if (f.num === F.graph.valueInfo) graph.replace.set(i, new Uint8Array(0)); });
  const constants = [
    encodeTensor(`${PREFIX}ncs`, DataType.INT64, [3], [0, 0, -1]),
    encodeTensor(`${PREFIX}c1`, DataType.INT64, [2], [-1, 1]),
    encodeTensor(`${PREFIX}axes02`, DataType.INT64, [2], [0, 2]),
    ...bns.map((bn, k) => encodeTensor(`${PREFIX}bn${k}_eps`, DataType.FLOAT, [], [bn.eps])),
  ];
  for (const c of constants) graph.append.push(lenField(F.graph.initializer, c));
  // onnxruntime resolves external data of a model given as bytes against the working
  // directory, not the model's: bring external tensors inline in this in-memory copy.
  for (const t of model.initializers.values()) {
    if (!t.external) continue;
    const e = graph.child(t.path[1]);
    t.fields.forEach((f, i) => { if (f.num === F.tensor.externalData || f.num === F.tensor.dataLocation) e.replace.set(i, new Uint8Array(0)); });
    e.append.push(lenField(F.tensor.rawData, externalTensorBytes(model, t)));
  }
  for (const o of xOutputs) graph.append.push(lenField(F.graph.output, encodeValueInfo(o, DataType.FLOAT)));
  const edit = new MessageEdit();
  edit.children.set(model.graphIndex, graph);
  return { bytes: applyEdit(buf, edit), xOutputs, inputs: needed, feedName };
}

/** Marks the items needed to compute `outputs`, walking the graph backwards. */
function neededItems(items: Item[], outputs: string[]): boolean[] {
  const want = new Set(outputs);
  const keep = new Array<boolean>(items.length).fill(false);
  for (let i = items.length - 1; i >= 0; i--) {
    const it = items[i];
    // A node with a subgraph may read outer names implicitly: keep what precedes it whole.
    if (it.hasSubgraph && it.outputs.some((o) => want.has(o))) return keep.map((k, j) => k || j <= i);
    if (!it.outputs.some((o) => want.has(o))) continue;
    keep[i] = true;
    for (const n of it.inputs) if (n) want.add(n);
  }
  return keep;
}

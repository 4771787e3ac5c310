// State of a whole tree of layers under PyTorch's dotted names, as a JSON-able
// object or as safetensors bytes that torch's load_state_dict accepts.
import { decodeSafetensors, encodeSafetensors, SafeTensor } from '../safetensors';
import { checkBoolean, checkKeys, checkObject, typeError } from '../validate';
import type { LayerState, LayerStateInput, NormLayer } from './layer';
import { LayerTree, namedLayers } from './tree';

function join(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}

/**
 * The state of every layer of a tree, flattened with dotted PyTorch names
 * (`'blocks.0.bn.running_mean'`), as a JSON-able object.
 * @example
 * const model = { stem: { bn: new BatchNorm(16) } };
 * fs.writeFileSync('state.json', JSON.stringify(stateDict(model)));
 */
export function stateDict(layers: LayerTree): LayerState {
  const out: LayerState = {};
  for (const [path, layer] of namedLayers(layers)) {
    for (const [key, value] of Object.entries(layer.state())) out[join(path, key)] = value;
  }
  return out;
}

export interface LoadStateOptions {
  /** true (default): every layer's entries must be present and every entry must belong to a layer. */
  strict?: boolean;
}

/** What a non-strict load skipped. */
export interface LoadStateResult {
  /** Layers (dotted paths) with no entry in the state, left as they were. */
  missing: string[];
  /** Entries that belong to no layer. */
  unexpected: string[];
}

function splitByLayer(layers: LayerTree, entries: string[]): { groups: Array<[string, NormLayer, string[]]>; unexpected: string[] } {
  const named = namedLayers(layers);
  const groups: Array<[string, NormLayer, string[]]> = named.map(([path, layer]) => [path, layer, []]);
  const unexpected: string[] = [];
  for (const name of entries) {
    // the longest layer path that prefixes the name owns it
    let owner: [string, NormLayer, string[]] | undefined;
    for (const g of groups) {
      const prefix = g[0] === '' ? '' : `${g[0]}.`;
      if (name.startsWith(prefix) && (owner === undefined || g[0].length > owner[0].length)) owner = g;
    }
    if (owner) owner[2].push(name);
    else unexpected.push(name);
  }
  return { groups, unexpected };
}

/**
 * Loads a flat dotted state (from {@link stateDict}, or converted from a
 * PyTorch state_dict) into the layers of a tree. Each layer loads strictly; with
 * `strict: false` layers without entries and entries without a layer are
 * skipped and reported.
 * @example
 * loadStateDict(model, JSON.parse(fs.readFileSync('state.json', 'utf8')));
 */
export function loadStateDict(layers: LayerTree, state: Record<string, unknown>, options?: LoadStateOptions): LoadStateResult {
  if (typeof state !== 'object' || state === null || Array.isArray(state)) throw typeError('state', 'an object of dotted names', state);
  const o = checkObject<LoadStateOptions>(options, 'options');
  checkKeys(o, ['strict']);
  const strict = checkBoolean(o.strict, 'options.strict', true);
  const { groups, unexpected } = splitByLayer(layers, Object.keys(state));
  if (strict && unexpected.length > 0) {
    throw new TypeError(`state: unexpected entries ${unexpected.map((u) => `'${u}'`).join(', ')} (no layer at that path)`);
  }
  const missing: string[] = [];
  const planned: Array<[string, NormLayer, LayerStateInput]> = [];
  for (const [path, layer, names] of groups) {
    if (names.length === 0 && Object.keys(layer.state()).length > 0) {
      if (strict) throw new TypeError(`state: no entries for the layer at '${path}' (expected ${Object.keys(layer.state()).map((k) => `'${join(path, k)}'`).join(', ')})`);
      missing.push(path);
      continue;
    }
    const prefix = path === '' ? 0 : path.length + 1;
    planned.push([path, layer, Object.fromEntries(names.map((n) => [n.slice(prefix), state[n]])) as LayerStateInput]);
  }
  for (const [path, layer, s] of planned) {
    try {
      layer.loadState(s);
    } catch (e) {
      if (e instanceof Error && path !== '') e.message = `${path}: ${e.message}`;
      throw e;
    }
  }
  return { missing, unexpected };
}

/**
 * The state of a tree of layers as safetensors bytes with PyTorch's names and
 * dtypes: float32 tensors, `num_batches_tracked` as an int64 scalar. torch
 * loads it with `safetensors.torch.load_file` + `load_state_dict`.
 * @example
 * fs.writeFileSync('bn.safetensors', saveSafetensors({ backbone: model }));
 */
export function saveSafetensors(layers: LayerTree, metadata: Record<string, string> = { format: 'pt' }): Uint8Array {
  const tensors: Record<string, SafeTensor> = {};
  for (const [path, layer] of namedLayers(layers)) {
    const shapes = layer.stateShapes();
    for (const [key, value] of Object.entries(layer.state())) {
      tensors[join(path, key)] = typeof value === 'number'
        ? { dtype: 'I64', shape: [], data: BigInt64Array.of(BigInt(value)) }
        : { dtype: 'F32', shape: shapes[key], data: Float32Array.from(value) };
    }
  }
  return encodeSafetensors(tensors, metadata);
}

/**
 * Loads safetensors bytes (saved by PyTorch or {@link saveSafetensors}) into a
 * tree of layers; tensor shapes must match the layers' (PyTorch's) shapes.
 * @example
 * loadSafetensors(model, fs.readFileSync('bn.safetensors'));
 */
export function loadSafetensors(layers: LayerTree, bytes: Uint8Array, options?: LoadStateOptions): LoadStateResult {
  const { tensors } = decodeSafetensors(bytes);
  const shapes: Record<string, number[]> = {};
  for (const [path, layer] of namedLayers(layers)) {
    for (const [key, shape] of Object.entries(layer.stateShapes())) shapes[join(path, key)] = shape;
  }
  for (const [name, t] of Object.entries(tensors)) {
    const want = shapes[name];
    if (want !== undefined && (want.length !== t.shape.length || want.some((d, i) => d !== t.shape[i]))) {
      throw new RangeError(`${name}: shape [${t.shape.join(', ')}] in the file, the layer has [${want.join(', ')}]`);
    }
  }
  const state = Object.fromEntries(Object.entries(tensors).map(([name, t]) => [name, t.data]));
  return loadStateDict(layers, state, options);
}

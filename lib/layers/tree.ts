// Finding layers in a model written as plain objects, arrays, Maps or class
// instances, with PyTorch-style dotted paths ('blocks.0.bn').
import { NormLayer } from './layer';

/**
 * A model's layers: a layer, or arrays, Maps and objects (plain or class
 * instances) holding layers at any depth. Typed arrays, ArrayBuffers and
 * functions are not searched.
 */
export type LayerTree = unknown;

function isContainer(value: unknown): value is object {
  if (typeof value !== 'object' || value === null) return false;
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer || value instanceof SharedArrayBuffer) return false;
  return !(value instanceof Date || value instanceof RegExp || value instanceof Promise || value instanceof Set || value instanceof WeakMap);
}

function children(container: object): Array<[string, unknown]> {
  if (container instanceof Map) return [...container.entries()].map(([k, v]) => [String(k), v]);
  return Object.entries(container);
}

function join(prefix: string, key: string): string {
  return prefix === '' ? key : `${prefix}.${key}`;
}

/**
 * Every layer in a tree with its dotted path, in depth-first order; each
 * layer once (the first path wins when it is reachable twice). The root layer
 * itself has path ''.
 * @example
 * const model = { stem: new BatchNorm(16), blocks: [{ bn: new BatchNorm(32) }] };
 * namedLayers(model).map(([path]) => path);   // ['stem', 'blocks.0.bn']
 */
export function namedLayers<T extends NormLayer = NormLayer>(tree: LayerTree, predicate?: (layer: NormLayer) => layer is T): Array<[string, T]> {
  const out: Array<[string, T]> = [];
  const seen = new Set<object>();
  const visit = (value: unknown, path: string): void => {
    if (!isContainer(value) || seen.has(value)) return;
    seen.add(value);
    if (value instanceof NormLayer) {
      if (!predicate || predicate(value)) out.push([path, value as T]);
      return;
    }
    for (const [key, child] of children(value)) visit(child, join(path, key));
  };
  visit(tree, '');
  return out;
}

/**
 * Replaces layers in place: `swap(layer, path)` returns the replacement, or
 * undefined to keep the layer. Containers are updated where they are; the
 * (possibly new) root is returned with the paths replaced.
 * @example
 * const { tree, replaced } = replaceLayers(model, (l) => (l instanceof BatchNorm ? freeze(l) : undefined));
 */
export function replaceLayers(tree: LayerTree, swap: (layer: NormLayer, path: string) => NormLayer | undefined):
  { tree: LayerTree; replaced: string[] } {
  const replaced: string[] = [];
  const seen = new Set<object>();
  const visit = (value: unknown, path: string): unknown => {
    if (!isContainer(value) || seen.has(value)) return value;
    seen.add(value);
    if (value instanceof NormLayer) {
      const next = swap(value, path);
      if (next === undefined || next === value) return value;
      replaced.push(path);
      return next;
    }
    if (value instanceof Map) {
      for (const [key, child] of [...value.entries()]) {
        const next = visit(child, join(path, String(key)));
        if (next !== child) value.set(key, next);
      }
      return value;
    }
    for (const [key, child] of Object.entries(value)) {
      const next = visit(child, join(path, key));
      if (next !== child) (value as Record<string, unknown>)[key] = next;
    }
    return value;
  };
  const root = visit(tree, '');
  return { tree: root, replaced };
}

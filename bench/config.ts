// What the benchmark measures: shapes, layouts, ops, and each op's traffic
// model (the minimum bytes it must move, DESIGN.md §4), which turns a time into
// an effective bandwidth and names the roofline probe it is compared with.
import type { Layout } from '../lib';

export type Op = 'moments' | 'forward-train' | 'forward-eval' | 'backward-train';
export const OPS: Op[] = ['moments', 'forward-train', 'forward-eval', 'backward-train'];

/** Logical shapes, [N, C, ...spatial]. */
export const SHAPES: number[][] = [[32, 64, 56, 56], [64, 256, 14, 14], [8, 32, 112, 112], [256, 512], [16, 16, 8, 8]];
/** The shape whose call overhead is checked against its kernel time. */
export const SMALL_SHAPE = '16x16x8x8';
/** Shapes large enough for bandwidth targets (the others are bound by call overhead). */
export const BANDWIDTH_SHAPES = ['32x64x56x56', '64x256x14x14', '8x32x112x112'];

/** Up to this size the kernel alone is timed too (the call's overhead matters only for small tensors). */
export const KERNEL_TIMING_MAX_ELEMENTS = 1 << 18;

export type ProbeKind = 'read' | 'copy' | 'triad';

export interface TrafficModel {
  /** Bytes moved per call, in units of the tensor's size S. */
  tensors: number;
  description: string;
  probe: ProbeKind;
}

export const TRAFFIC: Record<Op, TrafficModel> = {
  moments: { tensors: 1, description: 'read x once (S)', probe: 'read' },
  'forward-train': {
    tensors: 2,
    description: "read x once, write y once (2S): each channel's slice stays in cache between statistics and normalization",
    probe: 'copy',
  },
  'forward-eval': { tensors: 2, description: 'read x, write y (2S)', probe: 'copy' },
  'backward-train': { tensors: 3, description: 'read x and dy once, write dx (3S)', probe: 'triad' },
};

export function shapeKey(shape: readonly number[]): string {
  return shape.join('x');
}

/** The shape as rebatch takes it for a layout: NHWC lists channels last. */
export function physicalShape(shape: readonly number[], layout: Layout): number[] {
  if (shape.length === 2 || layout === 'NCHW') return [...shape];
  const [n, c, ...spatial] = shape;
  return [n, ...spatial, c];
}

/** Both layouts for 4-D shapes; (N, C) is the same memory in both, so NCHW only. */
export function layoutsOf(shape: readonly number[]): Layout[] {
  return shape.length === 2 ? ['NCHW'] : ['NCHW', 'NHWC'];
}

export function elements(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

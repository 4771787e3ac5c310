// The console table: one line per rebatch row with its roofline fraction and
// its speed ratio to every peer measured on the same case.
import { shapeKey } from './config';
import type { Row } from './row';

function cell(v: string, width: number): string {
  return v.length >= width ? `${v} ` : v.padEnd(width);
}

function ratio(v: number | undefined): string {
  if (v === undefined) return '-';
  return v >= 100 ? `${v.toFixed(0)}x` : v >= 10 ? `${v.toFixed(1)}x` : `${v.toFixed(2)}x`;
}

export function header(peers: string[]): string {
  const cols: Array<[string, number]> = [['op', 15], ['layout', 7], ['shape', 14], ['thr', 4], ['ms', 10], ['GB/s', 8],
    ['roof', 6], ['call-kernel', 12], ...peers.map((p): [string, number] => [`vs ${p}`, 14])];
  return cols.map(([h, w]) => cell(h, w)).join('');
}

export function line(r: Row, peers: string[]): string {
  const overhead = r.overheadUs === undefined ? '-' : `${r.overheadUs.toFixed(1)}us`;
  const cols: Array<[string, number]> = [
    [r.op, 15], [r.layout, 7], [shapeKey(r.shape), 14], [String(r.threads), 4],
    [r.medianMs < 0.1 ? r.medianMs.toFixed(4) : r.medianMs.toFixed(3), 10], [r.gbPerS.toFixed(1), 8],
    [`${Math.round(r.roofline.fraction * 100)}%`, 6], [overhead, 12],
    ...peers.map((p): [string, number] => [ratio(r.ratios?.[p]), 14]),
  ];
  return cols.map(([v, w]) => cell(v, w)).join('');
}

export const LEGEND = [
  'ms: median per call through the public API; GB/s: effective, by the op\'s traffic model;',
  'roof: GB/s over the roofline probe of the same size and threads (read for moments, copy for',
  'forwards, triad for backward) timed just before it, the median of the rounds\' fractions;',
  'call-kernel: the call minus the native computation inside it;',
  'vs X: X\'s median over rebatch\'s (higher = rebatch faster); with all threads, X\'s faster of its',
  '1-thread and all-thread medians.',
].join('\n');

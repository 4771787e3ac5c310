// Human-readable tables for the CLI's output.
import { LayerReport } from '../onnx/report';

/** Right-aligned columns; the first column left-aligned. */
export function table(rows: string[][], indent = '  '): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => indent + r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ').trimEnd()).join('\n') + '\n';
}

/** The layers that drifted most, as a table (at most `limit` rows, with a count of the rest). */
export function driftTable(layers: LayerReport[], limit = 8): string {
  const sorted = [...layers].sort((a, b) => b.drift - a.drift);
  const rows = [['layer', 'channels', 'drift', 'mean shift', 'std ratio']];
  for (const l of sorted.slice(0, limit)) {
    rows.push([l.name, String(l.channels), l.drift.toFixed(3), `${l.meanShift.toFixed(3)} σ`, l.stdRatio.toFixed(3)]);
  }
  let out = table(rows);
  if (sorted.length > limit) out += `  … and ${sorted.length - limit} more layer(s) (all in --stats-out)\n`;
  return out;
}

/** A short summary of values: min / mean / max. */
export function summary(values: ArrayLike<number>): string {
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  for (let i = 0; i < values.length; i++) {
    min = Math.min(min, values[i]);
    max = Math.max(max, values[i]);
    sum += values[i];
  }
  const f = (v: number) => (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(2) : v.toFixed(3));
  return `${f(min)} / ${f(sum / values.length)} / ${f(max)}`;
}

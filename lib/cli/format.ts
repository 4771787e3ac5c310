// Human-readable tables for the CLI's output.
import { LayerReport } from '../onnx/report';

/** A column is right-aligned when its cells below the header are all numbers (e.g. 0.25, 98.8%, 0.1 σ). */
function numericColumn(rows: string[][], c: number): boolean {
  return rows.slice(1).every((r) => /^-?[\d.,e+-]+( ?[%σ])?$/.test(r[c]));
}

/** A plain-text table: the first row is the header; numeric columns right-aligned. */
export function table(rows: string[][], indent = '  '): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  const right = rows[0].map((_, c) => c > 0 && numericColumn(rows, c));
  return rows.map((r) => indent + r.map((cell, c) => (right[c] ? cell.padStart(widths[c]) : cell.padEnd(widths[c]))).join('  ').trimEnd()).join('\n') + '\n';
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

// The performance targets of issue 5, checked against one run's rows.
import type { Op } from './config';
import { BANDWIDTH_SHAPES, shapeKey, SMALL_SHAPE, TRAFFIC } from './config';
import type { Row } from './row';
import { rowKey } from './row';

export interface Check {
  case: string;
  measured: number;
  pass: boolean;
}

export interface Target {
  target: string;
  required: string;
  checks: Check[];
  /** Why a target could not be checked (a peer missing). */
  note?: string;
}

/** Tolerance for "never slower": medians of this noisy machine move by a few percent run to run. */
export const THREADS_NOISE = 0.05;

export function evaluateTargets(rows: Row[], allThreads: number): Target[] {
  const ours = rows.filter((r) => r.impl.startsWith('rebatch'));
  const one = ours.filter((r) => r.threads === 1);
  const big = (r: Row) => BANDWIDTH_SHAPES.includes(shapeKey(r.shape));
  const fourD = (r: Row) => r.shape.length === 4;
  const targets: Target[] = [];
  const ratioTarget = (target: string, pick: (r: Row) => boolean, peer: string, min: number, from = one) => {
    const picked = from.filter(pick);
    const checks = picked.filter((r) => r.ratios?.[peer] !== undefined)
      .map((r) => ({ case: rowKey(r), measured: r.ratios![peer], pass: r.ratios![peer] >= min }));
    targets.push({ target, required: `>= ${min}x ${peer}`, checks, note: checks.length ? undefined : `${peer} not measured` });
  };
  const rooflineTarget = (target: string, op: Op, pick: (r: Row) => boolean, min: number) => {
    const checks = one.filter((r) => r.op === op && pick(r))
      .map((r) => ({ case: rowKey(r), measured: r.roofline.fraction, pass: r.roofline.fraction >= min }));
    targets.push({ target, required: `>= ${Math.round(min * 100)}% of the ${TRAFFIC[op].probe} roofline`, checks,
      note: checks.length ? undefined : `${op} not measured on these shapes` });
  };

  ratioTarget('training forward, NCHW, 4-D shapes', (r) => r.op === 'forward-train' && r.layout === 'NCHW' && big(r), 'pytorch', 4);
  rooflineTarget('training forward, NCHW, 4-D shapes', 'forward-train', (r) => r.layout === 'NCHW' && big(r), 0.7);
  ratioTarget('training forward, NHWC', (r) => r.op === 'forward-train' && r.layout === 'NHWC' && fourD(r), 'pytorch', 1.5);
  ratioTarget('backward (training), both layouts', (r) => r.op === 'backward-train', 'pytorch', 1.5);
  rooflineTarget('eval forward', 'forward-eval', big, 0.9);
  ratioTarget('eval forward never slower than PyTorch (1 and all threads)', (r) => r.op === 'forward-eval', 'pytorch', 1, ours);
  rooflineTarget('moments alone', 'moments', big, 0.8);

  const small = ours.filter((r) => shapeKey(r.shape) === SMALL_SHAPE && r.overheadUs !== undefined);
  targets.push({
    target: `${SMALL_SHAPE}: whole call minus the kernel inside it`,
    required: '<= 5 us',
    checks: small.map((r) => ({ case: rowKey(r), measured: r.overheadUs!, pass: r.overheadUs! <= 5 })),
  });

  const threadChecks = one.flatMap((r) => {
    const all = ours.find((o) => o.threads === allThreads && allThreads !== 1 && rowKey({ ...o, threads: 1 }) === rowKey(r));
    if (!all) return [];
    const slowdown = all.medianMs / r.medianMs;
    return [{ case: rowKey(all), measured: slowdown, pass: slowdown <= 1 + THREADS_NOISE }];
  });
  targets.push({
    target: `all threads (${allThreads}) never slower than one thread`,
    required: `time(all) / time(1) <= ${1 + THREADS_NOISE} (noise allowance)`,
    checks: threadChecks,
  });

  ratioTarget('training forward vs tfjs-wasm', (r) => r.op === 'forward-train', 'tfjs-wasm', 20);
  ratioTarget('training forward vs plain JS', (r) => r.op === 'forward-train', 'js', 10);
  return targets;
}

export function formatTargets(targets: Target[]): string {
  const lines: string[] = [];
  for (const t of targets) {
    const passed = t.checks.filter((c) => c.pass).length;
    const status = t.checks.length === 0 ? 'NOT CHECKED' : passed === t.checks.length ? 'MET' : 'NOT MET';
    lines.push(`${status.padEnd(12)}${t.target} (${t.required}): ${passed}/${t.checks.length}${t.note ? ` — ${t.note}` : ''}`);
    for (const c of t.checks.filter((x) => !x.pass)) lines.push(`              fails: ${c.case}: ${c.measured.toFixed(3)}`);
  }
  return lines.join('\n');
}

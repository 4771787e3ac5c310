// `rebatch demo`: PreciseBN and target-domain statistics on the bundled
// digits CNN (examples/digits, made by make_demo.py). Everything it prints is
// computed now: two recomputes and six accuracy evaluations with onnxruntime.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { parse } from '../args';
import { CliError } from '../errors';
import { accuracy } from '../evaluate';
import { driftTable, table } from '../format';
import { Io } from '../io';
import { recompute } from './recompute';

/** The help text of `rebatch demo`. */
export const usage = `rebatch demo [--out-dir DIR] [--json]

Runs rebatch on a small CNN trained on the scikit-learn digits with a small BN momentum
(examples/digits): recomputes its BN statistics (PreciseBN) and compares test accuracy with
the stored EMA statistics; then adapts it to a shifted domain with statistics recomputed on
unlabeled target images. The models it writes go to --out-dir (default: a new temporary folder).
`;

/** The folder of the demo assets: examples/digits in the package. */
export function demoDir(from = __dirname): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'examples', 'digits');
    if (fs.existsSync(path.join(candidate, 'model.onnx'))) return candidate;
    if (path.dirname(dir) === dir) {
      throw new CliError('demo: its model and data (examples/digits) ship with the source repository, not the npm package; ' +
        'clone the repository, then run npm ci && npm run demo');
    }
  }
}

const pct = (a: number) => `${(100 * a).toFixed(1)}%`;

/** Runs `rebatch demo`. */
export async function run(args: string[], io: Io): Promise<number> {
  const p = parse(args, { 'out-dir': { type: 'string' } }, 'demo');
  if (p.values.help) { io.out(usage); return 0; }
  const json = p.values.json === true;
  const dir = demoDir();
  const rel = path.relative(process.cwd(), dir) || '.';
  const f = (name: string) => path.join(dir, name);
  const shown = (name: string) => path.join(rel, name);
  const outDir = typeof p.values['out-dir'] === 'string' ? p.values['out-dir'] : fs.mkdtempSync(path.join(os.tmpdir(), 'rebatch-demo-'));
  fs.mkdirSync(outDir, { recursive: true });
  const say = (t: string) => { if (!json) io.out(t); };
  const pass = { batchSize: 32 };

  say(`rebatch demo: a small CNN trained on the scikit-learn digits (8×8 images) with BN momentum 0.01;\n` +
    `its training ended with a short high-learning-rate phase, so the EMA statistics it was exported with are stale.\n\n`);

  const precise = path.join(outDir, 'model.precise.onnx');
  say(`1. PreciseBN: recompute the BN statistics with the final weights on 400 unlabeled training images\n` +
    `   $ rebatch recompute ${shown('model.onnx')} --data ${shown('calib.npy')} --out ${precise}\n`);
  const src = await recompute(f('model.onnx'), f('calib.npy'), pass, 'pooled', precise, io, json);
  say(`   how far the stored statistics were from the recomputed ones, per BN layer:\n`);
  say(driftTable(src.layers).replace(/^(?=.)/gm, '   '));
  const emaAcc = await accuracy(f('model.onnx'), f('test.npy'), f('test_labels.npy'));
  const preciseAcc = await accuracy(precise, f('test.npy'), f('test_labels.npy'));
  say(`\n   test accuracy on 497 held-out digits (onnxruntime):\n`);
  say(table([['statistics', 'accuracy'], ['stored EMA', pct(emaAcc)], ['recomputed (PreciseBN)', pct(preciseAcc)]], '     '));

  const target = path.join(outDir, 'model.target.onnx');
  say(`\n2. A new domain (paper §5.1): the same digits with contrast × 0.35, offset + 0.45 and noise.\n` +
    `   Statistics recomputed on 400 unlabeled target-domain images, no labels and no training:\n` +
    `   $ rebatch recompute ${shown('model.onnx')} --data ${shown('target_calib.npy')} --out ${target}\n`);
  const tgt = await recompute(f('model.onnx'), f('target_calib.npy'), pass, 'pooled', target, io, json);
  say(`   how far the stored (source) statistics are from the target-domain ones:\n`);
  say(driftTable(tgt.layers).replace(/^(?=.)/gm, '   '));
  const tEma = await accuracy(f('model.onnx'), f('target_test.npy'), f('test_labels.npy'));
  const tPrecise = await accuracy(precise, f('target_test.npy'), f('test_labels.npy'));
  const tTarget = await accuracy(target, f('target_test.npy'), f('test_labels.npy'));
  say(`\n   accuracy on the 497 test digits in the target domain:\n`);
  say(table([['statistics', 'accuracy'], ['source, stored EMA', pct(tEma)], ['source, recomputed', pct(tPrecise)],
    ['target, recomputed', pct(tTarget)]], '     '));
  say(`\nmodels written to ${outDir}\n`);
  if (json) {
    io.out(`${JSON.stringify({
      command: 'demo', outDir,
      source: { emaAccuracy: emaAcc, recomputedAccuracy: preciseAcc, layers: src.result.layers },
      target: { sourceEmaAccuracy: tEma, sourceRecomputedAccuracy: tPrecise, targetAccuracy: tTarget, layers: tgt.result.layers },
    }, null, 2)}\n`);
  }
  return 0;
}

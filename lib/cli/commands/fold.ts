// `rebatch fold`: folds each BN into the Conv, ConvTranspose or Gemm before it
// (where the BN is that layer's only consumer), for deployment after recompute.
import * as fs from 'fs';
import { oneModel, parse } from '../args';
import { CliError } from '../errors';
import { table } from '../format';
import { Io } from '../io';
import { foldModel } from '../../onnx/fold';
import { readModel } from '../../onnx/model';
import { writeModel } from '../../onnx/recompute';

/** The help text of `rebatch fold`. */
export const usage = `rebatch fold MODEL.onnx --out OUT.onnx [--json]

Folds every BatchNormalization into the Conv, ConvTranspose or Gemm that feeds it, where the
BN is that node's only consumer: W' = W·γ/√(var+eps) per output channel, b' = (b − mean)·γ/√(var+eps) + β.
Other BN nodes are left as they are. Outputs equal the unfolded model's within float32 rounding.
`;

/** Runs `rebatch fold`. */
export async function run(args: string[], io: Io): Promise<number> {
  const p = parse(args, { out: { type: 'string' } }, 'fold');
  if (p.values.help) { io.out(usage); return 0; }
  const file = oneModel(p, 'fold');
  if (typeof p.values.out !== 'string') throw new CliError('rebatch fold: --out OUT.onnx is required');
  if (!fs.existsSync(file)) throw new CliError(`${file}: no such model file`);
  const model = readModel(file);
  const { bytes, outcomes } = foldModel(model);
  writeModel(model, bytes, p.values.out);
  const folded = outcomes.filter((o) => o.into !== null).length;
  if (p.values.json) {
    io.out(`${JSON.stringify({ command: 'fold', model: file, output: p.values.out, folded, left: outcomes.length - folded, nodes: outcomes }, null, 2)}\n`);
    return 0;
  }
  io.out(`${file}: folded ${folded} of ${outcomes.length} BatchNormalization node(s)\n`);
  if (outcomes.length) io.out(table([['BN', 'folded into'], ...outcomes.map((o) => [o.bn, o.into ?? `left: ${o.reason}`])]));
  io.out(`wrote ${p.values.out}\n`);
  return 0;
}

// `rebatch inspect`: the BN nodes of a model, their parameters and stored
// statistics, and a note when BN looks folded away.
import { oneModel, parse } from '../args';
import { summary, table } from '../format';
import { Io } from '../io';
import { findBatchNorms, foldedHint, storedStats } from '../../onnx/batchnorm';
import { defaultOpset, readModel } from '../../onnx/model';

/** The help text of `rebatch inspect`. */
export const usage = `rebatch inspect MODEL.onnx [--json]

Lists the BatchNormalization nodes: channels, eps, momentum, where the parameters live,
and min / mean / max of the stored mean and variance. Says when BN looks folded into Conv.
`;

/** Runs `rebatch inspect`. */
export async function run(args: string[], io: Io): Promise<number> {
  const p = parse(args, {}, 'inspect');
  if (p.values.help) { io.out(usage); return 0; }
  const file = oneModel(p, 'inspect');
  const model = readModel(file);
  const bns = findBatchNorms(model);
  const hint = foldedHint(model);
  const layers = bns.map((bn) => {
    const s = storedStats(model, bn);
    return {
      name: bn.label, input: bn.x, channels: bn.channels, eps: bn.eps, momentum: bn.momentum, trainingMode: bn.trainingMode,
      storage: bn.mean.kind + (bn.mean.via.length ? ' via Identity' : '') + (bn.mean.tensor.external ? ' (external data)' : ''),
      dtype: bn.mean.tensor.dataType,
      mean: Array.from(s.mean), var: Array.from(s.variance),
    };
  });
  const folded = bns.length === 0 && hint.convs > 0;
  const inputs = model.inputs.map((v) => ({ name: v.name, shape: v.shape }));
  if (p.values.json) {
    io.out(`${JSON.stringify({ command: 'inspect', model: file, opset: defaultOpset(model), irVersion: model.irVersion, inputs, nodes: model.nodes.length, batchNorms: layers, foldedLikely: folded }, null, 2)}\n`);
    return 0;
  }
  const shape = (s: (number | string | null)[] | null) => (s ? `[${s.map((d) => d ?? '?').join(', ')}]` : '(shape unknown)');
  io.out(`${file}: opset ${defaultOpset(model)}, IR ${model.irVersion}, ${model.nodes.length} nodes, ` +
    `input(s) ${inputs.map((i) => `${i.name} ${shape(i.shape)}`).join(', ')}\n`);
  if (bns.length === 0) {
    io.out(folded
      ? `no BatchNormalization node; ${hint.convs} Conv node(s), ${hint.convsWithBias} with a bias: BN looks folded into Conv at export.\n` +
        'Re-export with BN kept: model.eval(); torch.onnx.export(..., training=torch.onnx.TrainingMode.PRESERVE)\n'
      : 'no BatchNormalization node\n');
    return 0;
  }
  io.out(`${bns.length} BatchNormalization node(s):\n`);
  const rows = [['name', 'channels', 'eps', 'momentum', 'stored mean min/avg/max', 'stored var min/avg/max', 'parameters']];
  for (const l of layers) {
    rows.push([l.name, String(l.channels), String(Number(l.eps.toPrecision(6))), String(Number(l.momentum.toPrecision(6))), summary(l.mean), summary(l.var), l.storage + (l.trainingMode ? ', training_mode=1' : '')]);
  }
  io.out(table(rows));
  return 0;
}

/** @jest-environment ./test/ort-environment.js */
// rebatch recompute against PyTorch: the population statistics PyTorch computes
// with forward hooks in train() over the same batches (fixtures/onnx/reference.json,
// made by make_onnx_fixtures.py), and the written model's outputs against
// PyTorch's eval() with those statistics.
import * as fs from 'fs';
import * as path from 'path';
import { cli, fix, reference, runModel, tmpDir, worstRel } from './cli-helpers';
import { F, parseModel, readModel, readTensorValues } from '../lib/onnx/model';
import { findBatchNorms } from '../lib/onnx/batchnorm';
import { applyEdit, MessageEdit, parseFields, varintField } from '../lib/onnx/protobuf';

interface StatsFile { layers: { name: string; new: { mean: number[]; var: number[] }; stored: { mean: number[]; var: number[] }; elements: number; samples: number }[] }

const TOL = 1e-4;

/** Compares a --stats-out file with PyTorch's reference. */
function expectMatchesReference(statsFile: string, family: 'tiny' | 'mlp', estimator: 'pooled' | 'batch_average'): number {
  const s: StatsFile = JSON.parse(fs.readFileSync(statsFile, 'utf8'));
  const ref = reference[family].bn;
  expect(s.layers.length).toBe(ref.length);
  let worst = 0;
  s.layers.forEach((l, k) => {
    worst = Math.max(worst, worstRel(l.new.mean, ref[k][estimator].mean), worstRel(l.new.var, ref[k][estimator].var));
    expect(worstRel(l.stored.mean, ref[k].stored_mean)).toBeLessThan(1e-6);
    expect(l.elements).toBe(ref[k].elements);
  });
  expect(worst).toBeLessThan(TOL);
  return worst;
}

/** The model's bytes with the default-domain opset bumped (to test the ReduceMean axes-as-input form of opset 18+). */
function withOpset(file: string, opset: number, out: string): void {
  const model = readModel(file);
  const i = model.opsetFieldIndex.get('')!;
  const top = parseFields(model.bytes);
  const opsetFields = parseFields(model.bytes, top[i].valueStart, top[i].end);
  const edit = new MessageEdit();
  edit.child(i).replace.set(opsetFields.findIndex((f) => f.num === 2), varintField(2, opset)); // OperatorSetIdProto.version
  edit.replace.set(top.findIndex((f) => f.num === F.model.irVersion), varintField(F.model.irVersion, 10)); // IR 10 goes with opset 21
  fs.writeFileSync(out, applyEdit(model.bytes, edit));
}

describe('recompute matches PyTorch', () => {
  const dir = tmpDir();

  test.each([
    ['tiny_op9.onnx', 'tiny'], ['tiny_op13.onnx', 'tiny'], ['tiny_op17.onnx', 'tiny'],
    ['tiny_const_op13.onnx', 'tiny'], ['tiny_ext_op13.onnx', 'tiny'], ['mlp_op13.onnx', 'mlp'],
  ] as const)('%s: pooled statistics and eval outputs', async (name, family) => {
    const out = path.join(dir, name.replace('.onnx', '.precise.onnx'));
    const stats = path.join(dir, `${name}.json`);
    const data = fix(family === 'tiny' ? 'calib_tiny.npy' : 'calib_mlp.npy');
    const r = await cli('recompute', fix(name), '--data', data, '--batch-size', '16', '--out', out, '--stats-out', stats);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expectMatchesReference(stats, family, 'pooled');
    const y = await runModel(out, data, 8);
    expect(worstRel(y, reference[family].eval_pooled.flat(), 1e-2)).toBeLessThan(1e-4);
    // The stored statistics give PyTorch's eval output too: the original model is read right.
    expect(worstRel(await runModel(fix(name), data, 8), reference[family].eval_stored.flat(), 1e-2)).toBeLessThan(1e-4);
  });

  test.each([['tiny_op13.onnx', 'tiny'], ['mlp_op13.onnx', 'mlp']] as const)('%s: batch-average estimator', async (name, family) => {
    const stats = path.join(dir, `${name}.ba.json`);
    const data = fix(family === 'tiny' ? 'calib_tiny.npy' : 'calib_mlp.npy');
    const r = await cli('recompute', fix(name), '--data', data, '--batch-size', '16', '--estimator', 'batch-average',
      '--out', path.join(dir, `ba-${name}`), '--stats-out', stats);
    expect(r.code).toBe(0);
    expectMatchesReference(stats, family, 'batch_average');
  });

  test.each([18, 21])('opset %i (ReduceMean takes axes as an input)', async (opset) => {
    const model = path.join(dir, `tiny_op${opset}.onnx`);
    withOpset(fix('tiny_op17.onnx'), opset, model);
    const stats = path.join(dir, `op${opset}.json`);
    const r = await cli('recompute', model, '--data', fix('calib_tiny.npy'), '--batch-size', '16', '--stats-out', stats);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expectMatchesReference(stats, 'tiny', 'pooled');
  });

  test('an input exported with a fixed batch size runs with other batch sizes', async () => {
    const stats = path.join(dir, 'fixed.json');
    const r = await cli('recompute', fix('mlp_fixed_batch_op13.onnx'), '--data', fix('calib_mlp.npy'), '--batch-size', '16',
      '--out', path.join(dir, 'fixed.onnx'), '--stats-out', stats);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expectMatchesReference(stats, 'mlp', 'pooled');
    // The written model keeps its declared input shape: only BN statistics change.
    expect(parseModel(fs.readFileSync(path.join(dir, 'fixed.onnx'))).inputs[0].shape).toEqual([2, 12]);
  });

  test('BN exported in training mode (training_mode = 1, running-statistics outputs)', async () => {
    const stats = path.join(dir, 'train.json');
    const out = path.join(dir, 'train.onnx');
    const r = await cli('recompute', fix('mlp_train_op15.onnx'), '--data', fix('calib_mlp.npy'), '--batch-size', '16', '--out', out, '--stats-out', stats);
    expect(r.code).toBe(0);
    const s: StatsFile = JSON.parse(fs.readFileSync(stats, 'utf8'));
    s.layers.forEach((l, k) => {
      expect(worstRel(l.new.mean, reference.mlp.bn[k].pooled.mean)).toBeLessThan(TOL);
      expect(worstRel(l.new.var, reference.mlp.bn[k].pooled.var)).toBeLessThan(TOL);
    });
    const m = parseModel(fs.readFileSync(out));
    expect(m.nodes.filter((n) => n.opType === 'BatchNormalization').map((n) => n.outputs.length)).toEqual([3, 3]);
  });

  test('a model with several inputs: --input names the one the data feeds', async () => {
    const stats = path.join(dir, '2in.json');
    const args = [fix('mlp_2in_op13.onnx'), '--data', fix('calib_mlp.npy'), '--batch-size', '16', '--out', path.join(dir, '2in.onnx')];
    const missing = await cli('recompute', ...args);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/the model has 2 inputs \('x', 'z'\); say which one the data feeds with --input NAME/);
    expect((await cli('recompute', ...args, '--input', 'x', '--stats-out', stats)).code).toBe(0);
    expectMatchesReference(stats, 'mlp', 'pooled');
  });

  test('float16 model: statistics close to PyTorch float32 ones, written as float16', async () => {
    const stats = path.join(dir, 'fp16.json');
    const out = path.join(dir, 'fp16.onnx');
    expect((await cli('recompute', fix('mlp_fp16_op13.onnx'), '--data', fix('calib_mlp.npy'), '--batch-size', '16', '--out', out, '--stats-out', stats)).code).toBe(0);
    const s: StatsFile = JSON.parse(fs.readFileSync(stats, 'utf8'));
    s.layers.forEach((l, k) => {
      // Weights and inputs are rounded to float16 (11-bit significand): a 1e-2 tolerance.
      expect(worstRel(l.new.var, reference.mlp.bn[k].pooled.var, 0.1)).toBeLessThan(1e-2);
      expect(worstRel(l.new.mean, reference.mlp.bn[k].pooled.mean, 0.1)).toBeLessThan(1e-2);
    });
    const m = parseModel(fs.readFileSync(out));
    const bn = findBatchNorms(m)[1];
    expect(bn.mean.tensor.dataType).toBe(10);
    const written = readTensorValues(m, bn.mean.tensor);
    written.forEach((v, c) => expect(Math.abs(v - s.layers[1].new.mean[c])).toBeLessThanOrEqual(Math.abs(v) * 2 ** -11 + 1e-7));
  });

  test('a different batch size gives different statistics (the batches matter)', async () => {
    const stats = path.join(dir, 'bs12.json');
    const r = await cli('recompute', fix('tiny_op13.onnx'), '--data', fix('calib_tiny.npy'), '--batch-size', '12', '--out', path.join(dir, 'bs12.onnx'), '--stats-out', stats);
    expect(r.code).toBe(0);
    const s: StatsFile = JSON.parse(fs.readFileSync(stats, 'utf8'));
    expect(worstRel(s.layers[1].new.var, reference.tiny.bn[1].pooled.var)).toBeGreaterThan(1e-3);
  });

  test('only the BN mean and variance tensors change; everything else is byte for byte', async () => {
    const out = path.join(dir, 'only.onnx');
    expect((await cli('recompute', fix('tiny_op13.onnx'), '--data', fix('calib_tiny.npy'), '--out', out)).code).toBe(0);
    const a = readModel(fix('tiny_op13.onnx'));
    const b = parseModel(fs.readFileSync(out));
    expect(b.bytes.length).toBe(a.bytes.length); // raw_data keeps its length: nothing moves
    const bnTensors = new Set(findBatchNorms(a).flatMap((bn) => [bn.mean.tensor.name, bn.variance.tensor.name]));
    // Every differing byte lies inside a BN statistics tensor's raw_data.
    const ranges = findBatchNorms(a).flatMap((bn) => [bn.mean.tensor, bn.variance.tensor])
      .map((t) => t.fields.find((f) => f.num === F.tensor.rawData)!);
    let changed = 0;
    for (let i = 0; i < a.bytes.length; i++) {
      if (a.bytes[i] === b.bytes[i]) continue;
      changed++;
      expect(ranges.some((f) => i >= f.valueStart && i < f.end)).toBe(true);
    }
    expect(changed).toBeGreaterThan(0);
    for (const [name, t] of a.initializers) {
      const same = Buffer.from(readTensorValues(a, t).buffer).equals(Buffer.from(readTensorValues(b, b.initializers.get(name)!).buffer));
      expect(same).toBe(!bnTensors.has(name));
    }
  });

  test('Constant (float_data) storage: only the BN Constant tensors change, with re-prefixed messages', async () => {
    const out = path.join(dir, 'const.onnx');
    expect((await cli('recompute', fix('tiny_const_op13.onnx'), '--data', fix('calib_tiny.npy'), '--out', out)).code).toBe(0);
    const a = readModel(fix('tiny_const_op13.onnx'));
    const b = parseModel(fs.readFileSync(out));
    expect(b.nodes.map((n) => n.opType)).toEqual(a.nodes.map((n) => n.opType));
    // Nodes other than the statistics Constants are byte-identical.
    const statNodes = new Set(findBatchNorms(a).flatMap((bn) => [bn.mean.via[0]?.inputs[0], bn.variance.via[0]?.inputs[0]]));
    a.nodes.forEach((n, k) => {
      const fa = a.graphFields[n.fieldIndex];
      const fb = b.graphFields[b.nodes[k].fieldIndex];
      const same = Buffer.from(a.bytes.subarray(fa.start, fa.end)).equals(Buffer.from(b.bytes.subarray(fb.start, fb.end)));
      expect(same).toBe(!(n.opType === 'Constant' && statNodes.has(n.outputs[0])));
    });
  });

  test('external data: the input data file is untouched and the output reads its own copy', async () => {
    const sub = path.join(dir, 'ext-out');
    fs.mkdirSync(sub);
    const before = fs.readFileSync(fix('tiny_ext_op13.onnx.data'));
    const out = path.join(sub, 'ext.onnx');
    expect((await cli('recompute', fix('tiny_ext_op13.onnx'), '--data', fix('calib_tiny.npy'), '--batch-size', '16', '--out', out)).code).toBe(0);
    expect(fs.readFileSync(fix('tiny_ext_op13.onnx.data')).equals(before)).toBe(true);
    expect(fs.existsSync(path.join(sub, 'tiny_ext_op13.onnx.data'))).toBe(true);
    const y = await runModel(out, fix('calib_tiny.npy'), 8);
    expect(worstRel(y, reference.tiny.eval_pooled.flat(), 1e-2)).toBeLessThan(1e-4);
  });

  test('the default output is MODEL.precise.onnx and --json prints the result', async () => {
    const model = path.join(dir, 'copy.onnx');
    fs.copyFileSync(fix('mlp_op13.onnx'), model);
    const r = await cli('recompute', model, '--data', fix('calib_mlp.npy'), '--json');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.output).toBe(path.join(dir, 'copy.precise.onnx'));
    expect(j.samples).toBe(40);
    expect(j.batches).toBe(2);
    expect(j.layers).toHaveLength(2);
    expect(fs.existsSync(j.output)).toBe(true);
  });

  test('--max-samples and --drop-last choose the batches', async () => {
    const r = await cli('recompute', fix('mlp_op13.onnx'), '--data', fix('calib_mlp.npy'), '--batch-size', '16', '--max-samples', '37',
      '--drop-last', '--json', '--out', path.join(dir, 'ms.onnx'));
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ samples: 32, batches: 2 });
  });

  test('a model with BN folded at export: exit 2 and how to re-export', async () => {
    const out = path.join(dir, 'folded.precise.onnx');
    const r = await cli('recompute', fix('folded_op13.onnx'), '--data', fix('calib_tiny.npy'), '--out', out);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no BatchNormalization node: nothing to recompute/);
    expect(r.stderr).toMatch(/TrainingMode\.PRESERVE/);
    expect(fs.existsSync(out)).toBe(false);
  });
});

// npm run bench: rebatch's moments, training forward, eval forward and
// backward per shape, layout and thread count (1 and all), next to the peers
// present on this machine (PyTorch through /usr/bin/python3, onnxruntime-node,
// tfjs cpu and wasm, a plain-JS loop) and to the machine's roofline measured in
// the same run. Times are medians after warm-up.
//
// Usage: node dist/bench/run.js [--json FILE] [--quick] [--budget SECONDS] [--peers a,b,...]
//          [--shapes 32x64x56x56,...] [--ops moments,...] [--layouts NCHW|NHWC] [--threads 1|all]
import * as fs from 'fs';
import { getNumThreads, setNumThreads } from '../lib';
import { elements, KERNEL_TIMING_MAX_ELEMENTS, layoutsOf, OPS, shapeKey, SHAPES, TRAFFIC } from './config';
import { describeMachine } from './machine';
import { OnnxRuntimePeer } from './peers/onnxruntime';
import { PlainJsPeer } from './peers/plainjs';
import { PyTorchPeer } from './peers/pytorch';
import { TfjsPeer } from './peers/tfjs';
import type { Case, Peer } from './peers/types';
import { measureRebatch } from './rebatch';
import { measureRoofline, Roofline } from './roofline';
import { makeRow, Row } from './row';
import { header, LEGEND, line } from './table';
import { evaluateTargets, formatTargets } from './targets';

interface Options {
  json?: string;
  budget: number;
  peers?: string[];
  shapes?: string[];
  ops?: string[];
  layouts?: string[];
  threads?: string;
}

function parseArgs(argv: string[]): Options {
  const value = (flag: string) => (argv.includes(flag) ? argv[argv.indexOf(flag) + 1] : undefined);
  const budget = value('--budget');
  return {
    json: value('--json'),
    budget: budget !== undefined ? Number(budget) : argv.includes('--quick') ? 0.04 : 0.25,
    peers: value('--peers')?.split(','),
    shapes: value('--shapes')?.split(','),
    ops: value('--ops')?.split(','),
    layouts: value('--layouts')?.split(','),
    threads: value('--threads'),
  };
}

async function startPeers(wanted: string[] | undefined, notes: string[]): Promise<Peer[]> {
  const all: Peer[] = [new PyTorchPeer(), new OnnxRuntimePeer(), new TfjsPeer('cpu'), new TfjsPeer('wasm'), new PlainJsPeer()];
  const ready: Peer[] = [];
  for (const p of all.filter((x) => !wanted || wanted.includes(x.name))) {
    const why = await p.init();
    if (why) notes.push(`${p.name} skipped: ${why}`);
    else ready.push(p);
  }
  return ready;
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const machine = describeMachine();
  const allThreads = getNumThreads();
  const threadCounts = o.threads === '1' ? [1] : o.threads === 'all' ? [allThreads] : [...new Set([1, allThreads])];
  const notes: string[] = [];
  const peers = await startPeers(o.peers, notes);
  const peerNames = peers.map((p) => p.name);
  console.log(`rebatch bench: ${machine.cpu} (family ${machine.cpuFamily}, model ${machine.cpuModel}), ${machine.logicalCpus} CPUs, ` +
    `Node ${machine.node}, kernels ${machine.rebatchIsa}; peers: ${peers.map((p) => p.version()).join('; ') || 'none'}`);
  for (const n of notes) console.log(`note: ${n}`);
  console.log(header(peerNames));

  const rows: Row[] = [];
  const rooflines: Array<{ shape: number[]; threads: number; roofline: Roofline }> = [];
  const skipped = new Set<string>();
  for (const shape of SHAPES.filter((x) => !o.shapes || o.shapes.includes(shapeKey(x)))) {
    const tensorBytes = elements(shape) * 4;
    for (const threads of threadCounts) {
      setNumThreads(threads);
      const roofline = measureRoofline(elements(shape), o.budget);
      rooflines.push({ shape, threads, roofline });
      for (const layout of layoutsOf(shape).filter((x) => !o.layouts || o.layouts.includes(x))) {
        for (const op of OPS.filter((x) => !o.ops || o.ops.includes(x))) {
          const c: Case = { op, layout, shape, threads, budget: o.budget };
          const probe = roofline[TRAFFIC[op].probe].gbPerS;
          setNumThreads(threads);
          const t = measureRebatch(c, elements(shape) <= KERNEL_TIMING_MAX_ELEMENTS);
          const ours = makeRow({
            op, layout, shape, threads, impl: `rebatch-${machine.rebatchIsa}`, medianMs: t.medianMs, samples: t.samples,
            kernelMs: t.kernelMs, overheadUs: t.kernelMs === undefined ? undefined : (t.medianMs - t.kernelMs) * 1e3, ratios: {},
          }, tensorBytes, probe);
          rows.push(ours);
          for (const peer of peers) {
            const why = peer.skip(c);
            if (why) {
              skipped.add(why);
              continue;
            }
            if (threads > 1 && (peer.name.startsWith('tfjs') || peer.name === 'js')) {
              skipped.add(`${peer.name}: single-threaded, measured with 1 thread only`);
              continue;
            }
            try {
              const pt = await peer.measure(c);
              rows.push(makeRow({ op, layout, shape, threads, impl: peer.name, medianMs: pt.medianMs, samples: pt.samples,
                peerThreads: pt.threads }, tensorBytes, probe));
              // With all threads, a peer counts with the faster of its 1-thread and all-thread runs
              // (PyTorch's OpenMP threads are erratic on this VM: some 2-thread calls take 4-48 ms).
              const single = rows.find((r) => r.impl === peer.name && r.threads === 1 && r.op === op && r.layout === layout &&
                shapeKey(r.shape) === shapeKey(shape));
              const best = single ? Math.min(single.medianMs, pt.medianMs) : pt.medianMs;
              ours.ratios![peer.name] = best / ours.medianMs;
            } catch (e) {
              notes.push(`${peer.name} failed on ${op} ${layout} ${shapeKey(shape)}: ${(e as Error).message}`);
            }
          }
          console.log(line(ours, peerNames));
        }
      }
    }
  }
  setNumThreads(allThreads);
  for (const p of peers) await p.close();

  console.log(`\n${LEGEND}`);
  for (const s of skipped) console.log(`not measured: ${s}`);
  for (const n of notes.filter((x) => x.includes('failed'))) console.log(`note: ${n}`);
  const targets = evaluateTargets(rows, allThreads);
  console.log(`\nTargets (1 thread unless said):\n${formatTargets(targets)}`);
  if (o.json) {
    const result = {
      machine,
      peers: Object.fromEntries(peers.map((p) => [p.name, p.version()])),
      settings: { budgetSeconds: o.budget, threadCounts, timing: 'median of repeated calls after warm-up' },
      trafficModels: TRAFFIC,
      rooflines: rooflines.map((r) => ({ shape: r.shape, threads: r.threads, ...r.roofline })),
      rows,
      targets,
      notes: [...notes, ...[...skipped].map((s) => `not measured: ${s}`)],
    };
    fs.writeFileSync(o.json, `${JSON.stringify(result, null, 1)}\n`);
    console.log(`\nwrote ${rows.length} rows to ${o.json}`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

// npm run bench: rebatch's moments, training forward, eval forward and
// backward per shape, layout and thread count (1 and all), next to the peers
// present on this machine (PyTorch through /usr/bin/python3, onnxruntime-node,
// tfjs cpu and wasm, a plain-JS loop) and to the machine's roofline measured in
// the same run.
//
// Timing: the median of repeated calls after warm-up. The machine is a shared
// VM whose speed drifts, so each (shape, thread count) is measured in several
// rounds, each round timing, case after case, the op's roofline probe, rebatch
// and the fast peers one right after the other; a row's time is the median of
// its round medians, and its roofline fraction the median of its rounds'
// fractions, each against the probe of its own round (in a run whose probes
// opened each round, seconds before most ops, probes moved by 22-41% from round
// to round and ops by 6-33%, not together). Slow peers (tfjs, plain JS), far
// from rebatch anyway, are timed in the first round only.
//
// Usage: node dist/bench/run.js [--json FILE] [--quick] [--budget SECONDS] [--rounds N]
//          [--peers a,b,...] [--shapes 32x64x56x56,...] [--ops moments,...] [--layouts NCHW|NHWC] [--threads 1|all]
import * as fs from 'fs';
import { getNumThreads, setNumThreads } from '../lib';
import { elements, KERNEL_TIMING_MAX_ELEMENTS, layoutsOf, Op, OPS, shapeKey, SHAPES, TRAFFIC } from './config';
import { describeMachine } from './machine';
import { OnnxRuntimePeer } from './peers/onnxruntime';
import { PlainJsPeer } from './peers/plainjs';
import { PyTorchPeer } from './peers/pytorch';
import { TfjsPeer } from './peers/tfjs';
import type { Case, Peer } from './peers/types';
import { measureRebatch } from './rebatch';
import { measureProbe, medianProbe, ProbeResult, Roofline } from './roofline';
import { makeRow, Row } from './row';
import { header, LEGEND, line } from './table';
import { evaluateTargets, formatTargets } from './targets';
import { median } from './timing';
import type { Layout } from '../lib';

interface Options {
  json?: string;
  budget: number;
  rounds: number;
  peers?: string[];
  shapes?: string[];
  ops?: string[];
  layouts?: string[];
  threads?: string;
}

function parseArgs(argv: string[]): Options {
  const value = (flag: string) => (argv.includes(flag) ? argv[argv.indexOf(flag) + 1] : undefined);
  const quick = argv.includes('--quick');
  return {
    json: value('--json'),
    budget: Number(value('--budget') ?? (quick ? 0.04 : 0.25)),
    rounds: Number(value('--rounds') ?? (quick ? 1 : 3)),
    peers: value('--peers')?.split(','),
    shapes: value('--shapes')?.split(','),
    ops: value('--ops')?.split(','),
    layouts: value('--layouts')?.split(','),
    threads: value('--threads'),
  };
}

const SLOW_PEERS = new Set(['tfjs-cpu', 'tfjs-wasm', 'js']);

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

/** Round medians of one implementation on one case. */
interface Samples {
  ms: number[];
  /** The round of each entry of ms. */
  rounds: number[];
  samples: number;
  kernelMs: number[];
  peerThreads?: number;
}

function add(map: Map<string, Samples>, key: string, round: number, ms: number, samples: number, kernelMs?: number,
  peerThreads?: number) {
  const s = map.get(key) ?? { ms: [], rounds: [], samples: 0, kernelMs: [], peerThreads };
  s.ms.push(ms);
  s.rounds.push(round);
  s.samples += samples;
  if (kernelMs !== undefined) s.kernelMs.push(kernelMs);
  map.set(key, s);
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
    `Node ${machine.node}, kernels ${machine.rebatchIsa}; ${o.rounds} round(s) of ${o.budget} s per measurement; ` +
    `peers: ${peers.map((p) => p.version()).join('; ') || 'none'}`);
  for (const n of notes) console.log(`note: ${n}`);
  console.log(header(peerNames));

  const rows: Row[] = [];
  // Per shape and thread count: each probe's values (each variant the median of all its measurements).
  const rooflines: Array<{ shape: number[]; threads: number } & Partial<Roofline>> = [];
  const skipped = new Set<string>();
  for (const shape of SHAPES.filter((x) => !o.shapes || o.shapes.includes(shapeKey(x)))) {
    const tensorBytes = elements(shape) * 4;
    const cases: Array<{ op: Op; layout: Layout }> = [];
    for (const layout of layoutsOf(shape).filter((x) => !o.layouts || o.layouts.includes(x)))
      for (const op of OPS.filter((x) => !o.ops || o.ops.includes(x))) cases.push({ op, layout });
    // Rounds outermost, so both thread counts (and all implementations) see the same drift.
    const probes = new Map<string, ProbeResult[]>();  // `${threads} ${op} ${layout}`: one per round
    const timings = new Map<string, Samples>();  // `${threads} ${impl} ${op} ${layout}`
    for (let round = 0; round < o.rounds; round++) {
      for (const threads of threadCounts) {
        for (const { op, layout } of cases) {
          const c: Case = { op, layout, shape, threads, budget: o.budget };
          setNumThreads(threads);
          const probeKey = `${threads} ${op} ${layout}`;
          probes.set(probeKey, [...(probes.get(probeKey) ?? []), measureProbe(TRAFFIC[op].probe, elements(shape), o.budget)]);
          const t = measureRebatch(c, elements(shape) <= KERNEL_TIMING_MAX_ELEMENTS);
          add(timings, `${threads} rebatch ${op} ${layout}`, round, t.medianMs, t.samples, t.kernelMs);
          for (const peer of peers) {
            const why = peer.skip(c);
            if (why) {
              skipped.add(why);
              continue;
            }
            if (threads > 1 && SLOW_PEERS.has(peer.name)) {
              skipped.add(`${peer.name}: single-threaded, measured with 1 thread only`);
              continue;
            }
            if (round > 0 && SLOW_PEERS.has(peer.name)) continue;
            try {
              const pt = await peer.measure({ ...c, budget: SLOW_PEERS.has(peer.name) ? o.budget * o.rounds : o.budget });
              add(timings, `${threads} ${peer.name} ${op} ${layout}`, round, pt.medianMs, pt.samples, undefined, pt.threads);
            } catch (e) {
              notes.push(`${peer.name} failed on ${op} ${layout} ${shapeKey(shape)}: ${(e as Error).message}`);
            }
          }
        }
      }
    }
    for (const threads of threadCounts) {
      const roofline: Partial<Roofline> = {};
      for (const kind of new Set(cases.map((c) => TRAFFIC[c.op].probe)))
        roofline[kind] = medianProbe(cases.filter((c) => TRAFFIC[c.op].probe === kind)
          .flatMap((c) => probes.get(`${threads} ${c.op} ${c.layout}`)!));
      rooflines.push({ shape, threads, ...roofline });
      for (const { op, layout } of cases) {
        const probe = probes.get(`${threads} ${op} ${layout}`)!.map((p) => p.gbPerS);
        const probeOf = (s: Samples) => s.rounds.map((r) => probe[r]);
        const ourSamples = timings.get(`${threads} rebatch ${op} ${layout}`)!;
        const ms = median(ourSamples.ms);
        const kernelMs = ourSamples.kernelMs.length ? median(ourSamples.kernelMs) : undefined;
        const ours = makeRow({
          op, layout, shape, threads, impl: `rebatch-${machine.rebatchIsa}`, medianMs: ms, roundMs: ourSamples.ms, samples: ourSamples.samples,
          kernelMs, overheadUs: kernelMs === undefined ? undefined : (ms - kernelMs) * 1e3, ratios: {},
        }, tensorBytes, probeOf(ourSamples));
        rows.push(ours);
        for (const peer of peers) {
          const ps = timings.get(`${threads} ${peer.name} ${op} ${layout}`);
          if (!ps) continue;
          const pms = median(ps.ms);
          rows.push(makeRow({ op, layout, shape, threads, impl: peer.name, medianMs: pms, roundMs: ps.ms, samples: ps.samples,
            peerThreads: ps.peerThreads }, tensorBytes, probeOf(ps)));
          // With all threads, a peer counts with the faster of its 1-thread and all-thread runs
          // (PyTorch's OpenMP threads are erratic on this VM: some 2-thread calls take 4-48 ms).
          const single = rows.find((r) => r.impl === peer.name && r.threads === 1 && r.op === op && r.layout === layout &&
            shapeKey(r.shape) === shapeKey(shape));
          ours.ratios![peer.name] = (single ? Math.min(single.medianMs, pms) : pms) / ms;
        }
        console.log(line(ours, peerNames));
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
      settings: {
        budgetSeconds: o.budget, rounds: o.rounds, threadCounts,
        timing: 'median of repeated calls after warm-up, per round; a row is the median of its round medians',
      },
      trafficModels: TRAFFIC,
      rooflines,
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

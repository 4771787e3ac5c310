// PyTorch on the CPU, through Debian's /usr/bin/python3 (where torch is
// installed; a `python3` found first on PATH may lack it). One long-lived
// worker process (pytorch_worker.py) times each case when asked, so PyTorch
// is measured right next to rebatch on the same shapes; torch.set_num_threads
// follows the case's thread count.
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import type { Case, Peer, PeerTiming } from './types';

const PYTHON = '/usr/bin/python3';
// From dist/bench/peers back to the sources' bench/peers.
const WORKER = path.resolve(__dirname, '..', '..', '..', 'bench', 'peers', 'pytorch_worker.py');

export class PyTorchPeer implements Peer {
  readonly name = 'pytorch';
  private child?: ChildProcess;
  private lines: string[] = [];
  private waiting?: (line: string) => void;
  private torchVersion = '';

  async init(): Promise<string | null> {
    if (!fs.existsSync(PYTHON)) return `${PYTHON} not found`;
    this.child = spawn(PYTHON, [WORKER], { stdio: ['pipe', 'pipe', 'inherit'] });
    let buffer = '';
    this.child.stdout!.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (this.waiting) {
          const w = this.waiting;
          this.waiting = undefined;
          w(line);
        } else {
          this.lines.push(line);
        }
      }
    });
    const exited = new Promise<string>((resolve) => this.child!.on('exit', (code) => resolve(`worker exited (${code})`)));
    const first = await Promise.race([this.nextLine(), exited]);
    let hello: { ready?: boolean; version?: string; error?: string };
    try {
      hello = JSON.parse(first);
    } catch {
      return `PyTorch worker did not start: ${first}`;
    }
    if (!hello.ready) return `import torch failed in ${PYTHON}: ${hello.error}`;
    this.torchVersion = hello.version ?? '';
    return null;
  }

  private nextLine(): Promise<string> {
    const queued = this.lines.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve) => { this.waiting = resolve; });
  }

  skip(): string | null {
    return null;
  }

  async measure(c: Case): Promise<PeerTiming> {
    this.child!.stdin!.write(`${JSON.stringify({ op: c.op, layout: c.layout, shape: c.shape, threads: c.threads, budget: c.budget })}\n`);
    const reply = JSON.parse(await this.nextLine()) as { ms?: number; samples?: number; threads?: number; error?: string };
    // Let the OpenMP threads of the worker stop spinning before anything else is timed.
    await new Promise((resolve) => setTimeout(resolve, 100));
    if (reply.error !== undefined || reply.ms === undefined) throw new Error(`PyTorch worker: ${reply.error}`);
    return { medianMs: reply.ms, samples: reply.samples ?? 0, threads: reply.threads ?? c.threads };
  }

  async close(): Promise<void> {
    if (!this.child || this.child.exitCode !== null) return;
    this.child.stdin!.end();
    await new Promise((resolve) => this.child!.once('exit', resolve));
  }

  version(): string {
    return `torch ${this.torchVersion} (${PYTHON})`;
  }
}

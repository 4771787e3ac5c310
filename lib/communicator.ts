// How SyncBatchNorm combines statistics across workers: an all-gather of small
// float64 arrays. A single-process communicator, and one for worker_threads
// built on SharedArrayBuffer + Atomics (blocking, so forward and backward stay
// synchronous).
import { checkInteger, checkKeys, checkObject, typeError } from './validate';

/**
 * A group of `worldSize` workers that exchange small float64 arrays. Every
 * rank calls `allGather` the same number of times, in the same order, with
 * arrays of the same length; the call blocks until all ranks have given theirs.
 */
export interface Communicator {
  readonly rank: number;
  readonly worldSize: number;
  /** Every rank's `data`, in rank order (copies). */
  allGather(data: Float64Array): Float64Array[];
}

/**
 * The communicator of a single process (world size 1): SyncBatchNorm with it
 * is a BatchNorm.
 * @example new SyncBatchNorm(64, new LocalCommunicator());
 */
export class LocalCommunicator implements Communicator {
  readonly rank = 0;
  readonly worldSize = 1;
  allGather(data: Float64Array): Float64Array[] {
    if (!(data instanceof Float64Array)) throw typeError('data', 'a Float64Array', data);
    return [data.slice()];
  }
}

/**
 * The shared memory of a worker_threads group, created once with
 * {@link SharedMemoryCommunicator.createGroup} and passed to every worker (in
 * `workerData` or a message: SharedArrayBuffers are shared, not copied).
 */
export interface SharedGroup {
  worldSize: number;
  /** Float64 values each rank may send per call. */
  capacity: number;
  timeoutMs: number;
  control: SharedArrayBuffer;
  data: SharedArrayBuffer;
}

// control (Int32): [0] arrived, [1] generation, [2] aborted, [3 + r] length sent by rank r
const ARRIVED = 0;
const GENERATION = 1;
const ABORTED = 2;
const LENGTHS = 3;

/**
 * A communicator for worker_threads: each call writes the rank's array into
 * shared memory, waits at a barrier (Atomics.wait), reads everyone's, and waits
 * again before the memory is reused. A rank that fails can `abort()` the group
 * so the others throw instead of waiting; a barrier that waits longer than
 * `timeoutMs` throws too.
 *
 * @example
 * // main thread
 * const group = SharedMemoryCommunicator.createGroup(4);
 * for (let rank = 0; rank < 4; rank++) new Worker('./train.js', { workerData: { group, rank } });
 * // train.js
 * const comm = new SharedMemoryCommunicator(workerData.group, workerData.rank);
 * const bn = new SyncBatchNorm(64, comm);
 */
export class SharedMemoryCommunicator implements Communicator {
  readonly rank: number;
  readonly worldSize: number;
  private readonly control: Int32Array;
  private readonly slots: Float64Array;
  private readonly capacity: number;
  private readonly timeoutMs: number;

  /** Shared memory for a group of `worldSize` ranks; pass it to every worker. */
  static createGroup(worldSize: number, options?: { capacity?: number; timeoutMs?: number }): SharedGroup {
    const size = checkInteger(worldSize, 'worldSize', undefined, 1, 4096);
    const o = checkObject<{ capacity: number; timeoutMs: number }>(options, 'options');
    checkKeys(o, ['capacity', 'timeoutMs']);
    const capacity = checkInteger(o.capacity, 'options.capacity', 1 << 14, 1);
    const timeoutMs = checkInteger(o.timeoutMs, 'options.timeoutMs', 60000, 1);
    return {
      worldSize: size, capacity, timeoutMs,
      control: new SharedArrayBuffer(4 * (LENGTHS + size)),
      data: new SharedArrayBuffer(8 * capacity * size),
    };
  }

  constructor(group: SharedGroup, rank: number) {
    if (typeof group !== 'object' || group === null || !(group.control instanceof SharedArrayBuffer) || !(group.data instanceof SharedArrayBuffer)) {
      throw typeError('group', 'a SharedGroup from SharedMemoryCommunicator.createGroup', group);
    }
    this.worldSize = checkInteger(group.worldSize, 'group.worldSize', undefined, 1);
    this.rank = checkInteger(rank, 'rank', undefined, 0, this.worldSize - 1);
    this.capacity = group.capacity;
    this.timeoutMs = group.timeoutMs;
    this.control = new Int32Array(group.control);
    this.slots = new Float64Array(group.data);
    if (this.control.length !== LENGTHS + this.worldSize || this.slots.length !== this.capacity * this.worldSize) {
      throw new RangeError('group: its buffers do not match its worldSize and capacity');
    }
  }

  allGather(data: Float64Array): Float64Array[] {
    if (!(data instanceof Float64Array)) throw typeError('data', 'a Float64Array', data);
    if (data.length > this.capacity) {
      throw new RangeError(`data: ${data.length} values exceed the group's capacity of ${this.capacity} per rank (createGroup options.capacity)`);
    }
    this.slots.set(data, this.rank * this.capacity);
    Atomics.store(this.control, LENGTHS + this.rank, data.length);
    this.barrier();
    const out: Float64Array[] = [];
    let mismatch = '';
    for (let r = 0; r < this.worldSize; r++) {
      const length = Atomics.load(this.control, LENGTHS + r);
      if (length !== data.length) mismatch = `rank ${r} sent ${length} values, rank ${this.rank} ${data.length}`;
      out.push(this.slots.slice(r * this.capacity, r * this.capacity + length));
    }
    this.barrier();
    if (mismatch) throw new RangeError(`allGather: ranks called with different lengths (${mismatch}); they must call in the same order`);
    return out;
  }

  /** Makes every rank waiting in (or later entering) allGather throw. */
  abort(): void {
    Atomics.store(this.control, ABORTED, 1);
    Atomics.notify(this.control, GENERATION);
  }

  private barrier(): void {
    const c = this.control;
    if (Atomics.load(c, ABORTED)) throw new Error('SharedMemoryCommunicator: the group was aborted by a rank');
    const generation = Atomics.load(c, GENERATION);
    if (Atomics.add(c, ARRIVED, 1) === this.worldSize - 1) {
      Atomics.store(c, ARRIVED, 0);
      Atomics.add(c, GENERATION, 1);
      Atomics.notify(c, GENERATION);
      return;
    }
    const deadline = Date.now() + this.timeoutMs;
    while (Atomics.load(c, GENERATION) === generation) {
      if (Atomics.load(c, ABORTED)) throw new Error('SharedMemoryCommunicator: the group was aborted by a rank');
      const left = deadline - Date.now();
      if (left <= 0) {
        this.abort();
        throw new Error(`SharedMemoryCommunicator: rank ${this.rank} waited more than ${this.timeoutMs} ms for the other ranks`);
      }
      Atomics.wait(c, GENERATION, generation, left);
    }
  }
}

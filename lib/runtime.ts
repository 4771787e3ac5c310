// Which kernels run and on how many threads.
import { native } from './native';
import { checkInteger, typeError } from './validate';

/** The kernel implementation in use: `'avx2'`, `'neon'` or `'scalar'`. Set REBATCH_ISA to override at load. */
export function isa(): string {
  return native.isa();
}

/**
 * Switches the kernels at run time (for tests and diagnostics). Throws a RangeError
 * when this CPU or build lacks the ISA.
 * @example setIsa('scalar'); // the reference kernels
 */
export function setIsa(name: 'scalar' | 'avx2' | 'neon'): void {
  if (typeof name !== 'string') throw typeError('name', "'scalar', 'avx2' or 'neon'", name);
  if (!native.selectIsa(name)) throw new RangeError(`name: ISA '${name}' is not supported by this CPU or build (available: ${supportedIsas().join(', ')})`);
}

/** The ISAs this CPU and build can run. */
export function supportedIsas(): string[] {
  return ['scalar', 'avx2', 'neon'].filter((n) => native.isaSupported(n));
}

/** Threads the kernels use, the calling thread included. */
export function getNumThreads(): number {
  return native.getNumThreads();
}

/**
 * Sets the size of the process-wide thread pool (default: REBATCH_NUM_THREADS, else
 * the CPUs available). Small tensors always run on the calling thread.
 * @example setNumThreads(1);
 */
export function setNumThreads(n: number): void {
  native.setNumThreads(checkInteger(n, 'n', undefined, 1, 1024));
}

if (native.isaNote()) {
  process.emitWarning(`REBATCH_ISA=${process.env.REBATCH_ISA} is not supported by this CPU or build (available: ` +
    `${supportedIsas().join(', ')}); using ${native.isa()}`, { code: 'REBATCH_ISA' });
}

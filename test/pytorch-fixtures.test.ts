// Golden values from PyTorch 1.13 (F.batch_norm + autograd in float64), made by
// test/fixtures/make_fixtures.py, on every ISA here with 1 and 2 threads. The
// checks and their tolerances live in scripts/fixture-check.js, which also runs
// outside jest (arm64 Node under qemu in CI).
import * as rebatch from '../lib';
import { withConfiguration, configurations } from './helpers';

interface FixtureChecker {
  loadFixtures(): { cases: Array<{ name: string }>; ghost: Array<{ name: string }>; known_vector: { name: string } };
  checkCase(lib: typeof rebatch, c: unknown): string[];
  checkKnownVector(lib: typeof rebatch, k: unknown): string[];
}
// eslint-disable-next-line @typescript-eslint/no-var-requires
const checker = require('../scripts/fixture-check.js') as FixtureChecker;
const fixtures = checker.loadFixtures();

describe.each(configurations)('PyTorch fixtures on %s with %i thread(s)', (isaName, threads) => {
  test.each([...fixtures.cases, ...fixtures.ghost].map((c) => [c.name, c] as const))('%s', (_name, c) => {
    expect(withConfiguration(isaName, threads, () => checker.checkCase(rebatch, c))).toEqual([]);
  });

  test('known vector of PyTorch issue 60528', () => {
    expect(withConfiguration(isaName, threads, () => checker.checkKnownVector(rebatch, fixtures.known_vector))).toEqual([]);
  });
});

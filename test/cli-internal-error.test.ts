// The internal-error path of the CLI (its own file: it mocks a command module).
import { main } from '../lib/cli/main';
import { memoryIo } from '../lib/cli/io';

jest.mock('../lib/cli/commands/inspect', () => ({ usage: '', run: async () => { throw new TypeError('boom'); } }));

test('an internal error: exit 1, one line and a hint; --debug gives the stack', async () => {
  const io = memoryIo();
  expect(await main(['inspect', 'x.onnx'], io)).toBe(1);
  expect(io.stderr).toBe('rebatch: internal error: boom\n(run with --debug for a stack trace)\n');
  const dbg = memoryIo();
  expect(await main(['inspect', 'x.onnx', '--debug'], dbg)).toBe(1);
  expect(dbg.stderr).toMatch(/TypeError: boom\n\s+at /);
});

// Without onnxruntime-node (an optional peer dependency) the model-running
// commands say how to install it; the others still work.
import { main } from '../lib/cli/main';
import { memoryIo } from '../lib/cli/io';
import * as path from 'path';

// Not from cli-helpers: it loads onnxruntime-node itself.
const fix = (name: string): string => path.join(__dirname, 'fixtures', 'onnx', name);

jest.mock('onnxruntime-node', () => {
  const e = new Error("Cannot find module 'onnxruntime-node' from 'lib/onnx/ort.ts'") as NodeJS.ErrnoException;
  e.code = 'MODULE_NOT_FOUND';
  throw e;
});

test('recompute: exit 2 and how to install onnxruntime-node; inspect works without it', async () => {
  const io = memoryIo();
  expect(await main(['recompute', fix('mlp_op13.onnx'), '--data', fix('calib_mlp.npy'), '--out', '/nonexistent/o.onnx'], io)).toBe(2);
  expect(io.stderr).toMatch(/^rebatch: this command runs the model with onnxruntime-node, which is not installed: npm install onnxruntime-node/);
  const ok = memoryIo();
  expect(await main(['inspect', fix('mlp_op13.onnx')], ok)).toBe(0);
});

// Classification accuracy of an ONNX model with onnxruntime, for the demo.
import type * as Ort from 'onnxruntime-node';
import { loadOrt } from '../onnx/ort';
import { readAll } from '../data/open';

/** Accuracy (0..1) of `model` (one input, logits output [N, classes]) on data with integer labels. */
export async function accuracy(model: string, dataSpec: string, labelsSpec: string): Promise<number> {
  const x = await readAll(dataSpec);
  const y = await readAll(labelsSpec);
  if (y.shape[0] !== x.shape[0]) throw new RangeError(`${labelsSpec}: ${y.shape[0]} labels for ${x.shape[0]} samples in ${dataSpec}`);
  const ort = loadOrt();
  const session = await ort.InferenceSession.create(model, { logSeverityLevel: 3 });
  try {
    const out = await session.run({ [session.inputNames[0]]: new ort.Tensor('float32', x.data, x.shape) });
    const logits = out[session.outputNames[0]] as Ort.Tensor;
    const classes = logits.dims[1];
    const data = logits.data as Float32Array;
    let correct = 0;
    for (let i = 0; i < x.shape[0]; i++) {
      let best = 0;
      for (let c = 1; c < classes; c++) if (data[i * classes + c] > data[i * classes + best]) best = c;
      if (best === y.data[i]) correct++;
    }
    return correct / x.shape[0];
  } finally {
    await session.release();
  }
}

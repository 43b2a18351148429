import t from 'tap'
import { createLogger } from '../../common/logger.ts'
import { FrameSource } from '../../media/frame-source.ts'
import { PADDLE_OCR } from '../../media/preprocess.ts'

const log = createLogger('silent')

t.test('a decode worker that dies is started again, and a frame asked for meanwhile still comes', async (t) => {
  const source = new FrameSource({
    options: { url: 'lavfi:testsrc=size=64x48:rate=10', width: 32, height: 32, fps: 10, loop: true, paced: true, input: PADDLE_OCR, hwaccel: 'none' },
    log
  })
  source.start()
  t.teardown(() => source.stop())
  const first = await source.next()
  t.equal(first?.tensor.length, 3 * 32 * 32, 'frames come')

  // What a crash in FFmpeg looks like from here: the thread exits with a non-zero code.
  await (source as unknown as { worker: { terminate: () => Promise<number> } }).worker.terminate()
  const after = await source.next()
  t.equal(after?.tensor.length, 3 * 32 * 32, 'the next frame comes from the new worker, not null (the end of the source)')
  t.equal(source.stats().reconnects, 1, 'the restart is counted')
})

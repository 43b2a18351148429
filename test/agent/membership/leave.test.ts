import t from 'tap'
import { createLogger } from '../../../common/logger.ts'
import { systemEventCodec } from '../../../protocols/events.ts'
import { LEAVE_GRACE_MS, LeaveAnnouncement } from '../../../agent/membership/leave.ts'

function fakeMesh (fail = false) {
  const published: Array<{ topic: string, value: unknown, at: number }> = []
  return {
    published,
    publish: async (codec: { topic: string }, value: unknown) => {
      if (fail) throw new Error('no peers')
      published.push({ topic: codec.topic, value, at: Date.now() })
    }
  }
}

t.test('start announces nothing; stop announces the leave of this run, then waits the grace', async (t) => {
  const mesh = fakeMesh()
  const leave = new LeaveAnnouncement({ mesh: mesh as never, log: createLogger('silent'), startedAt: 42 })
  await leave.start()
  t.same(mesh.published, [], 'nothing at start')
  const before = Date.now()
  await leave.stop()
  const took = Date.now() - before
  t.match(mesh.published, [{ topic: systemEventCodec.topic, value: { v: 1, type: 'member.leave', startedAt: 42 } }])
  t.ok(took >= LEAVE_GRACE_MS - 5, `stop waited the grace (${took} ms)`)
})

t.test('a leave that cannot be published is logged, and stop still ends', async (t) => {
  const lines: string[] = []
  const log = createLogger('warn', { write: (line: string) => { lines.push(line) } })
  const leave = new LeaveAnnouncement({ mesh: fakeMesh(true) as never, log, startedAt: 1 })
  await leave.stop()
  t.match(lines.map((l) => JSON.parse(l) as { msg: string }), [{ msg: 'leave not announced' }])
})

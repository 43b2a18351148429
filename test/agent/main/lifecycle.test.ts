import t from 'tap'
import { Lifecycle } from '../../../agent/main/lifecycle.ts'
import { createLogger } from '../../../common/logger.ts'

const log = createLogger('silent')

t.test('starts in order, stops in reverse', async (t) => {
  const calls: string[] = []
  const part = (name: string) => ({ start: () => { calls.push(`start ${name}`) }, stop: async () => { calls.push(`stop ${name}`) } })
  const lc = new Lifecycle([['a', part('a')], ['b', {}], ['c', part('c')]], log)
  await lc.start()
  await lc.stop()
  await lc.stop()
  t.same(calls, ['start a', 'start c', 'stop c', 'stop a'], 'and a second stop does nothing')
})

t.test('a failed start stops what had started; a failed stop does not stop the others', async (t) => {
  const calls: string[] = []
  const lc = new Lifecycle([
    ['a', { start: () => { calls.push('start a') }, stop: () => { calls.push('stop a') } }],
    ['b', { start: () => { calls.push('start b') }, stop: () => { throw new Error('b will not stop') } }],
    ['c', { start: () => { throw new Error('c will not start') }, stop: () => { calls.push('stop c') } }]
  ], log)
  await t.rejects(lc.start(), { message: 'c will not start' })
  t.same(calls, ['start a', 'start b', 'stop a'])
})

import { TopicValidatorResult } from '@libp2p/gossipsub'
import type { Message } from '@libp2p/gossipsub'
import { peerIdFromString } from '@libp2p/peer-id'
import t from 'tap'
import { createLogger } from '../../common/logger.ts'
import { MetricsStore } from '../../agent/metrics/metrics.ts'
import { systemEventCodec } from '../../protocols/events.ts'
import { GossipValidator, REJECTED_METRIC } from '../../protocols/validator.ts'

const peer = peerIdFromString('12D3KooWQwdqLaMv2dPBv1WVywHdTerao7cMJEuVyEuGUTJTz1hJ')
const signed = (topic: string, data: Uint8Array): Message =>
  ({ type: 'signed', topic, data, from: peer, sequenceNumber: 1n, signature: new Uint8Array(64), key: undefined as never })

t.test('accepts what its codec reads, refuses and counts the rest', async (t) => {
  const metrics = new MetricsStore()
  const v = new GossipValidator({ metrics, log: createLogger('silent') })
  v.add(systemEventCodec)
  const good = signed(systemEventCodec.topic, systemEventCodec.encode({ v: 1, type: 'member.leave', at: 1, startedAt: 1 }))
  t.equal(v.validate(peer, good), TopicValidatorResult.Accept)
  t.match(v.take(good), { type: 'member.leave' }, 'the decoded value is handed over, not parsed twice')

  const bad = signed(systemEventCodec.topic, new TextEncoder().encode('nope'))
  t.equal(v.validate(peer, bad), TopicValidatorResult.Reject)
  t.equal(v.take(bad), undefined, 'a refused message never reaches a handler')
  const unsigned = { type: 'unsigned', topic: systemEventCodec.topic, data: good.data } as Message
  t.equal(v.validate(peer, unsigned), TopicValidatorResult.Reject, 'unsigned messages are refused')
  t.equal(v.validate(peer, signed('noodle/9/other', good.data)), TopicValidatorResult.Ignore, 'topics without a codec are ignored')
  t.same(metrics.series(REJECTED_METRIC), { [`malformed/${systemEventCodec.topic}`]: 1, [`unsigned/${systemEventCodec.topic}`]: 1 })
})

t.test('the metrics store speaks gossipsub\'s register interface', async (t) => {
  const m = new MetricsStore()
  const plain = m.gauge({ name: 'g' })
  plain.inc()
  plain.inc(2)
  t.equal(m.get('g'), 3)
  plain.set(7)
  t.equal(m.get('g'), 7)
  const labelled = m.gauge({ name: 'l', labelNames: ['topic'] })
  labelled.inc({ topic: 'a' }, 2)
  labelled.inc({ topic: 'b' })
  labelled.set({ topic: 'c' }, 5)
  t.same(m.series('l'), { a: 2, b: 1, c: 5 })
  t.equal(m.sum('l'), 8)
  let collected = 0
  plain.addCollect(() => { collected++ })
  m.collect()
  t.equal(collected, 1)
  const h = m.histogram({ name: 'h' })
  h.observe(2)
  h.observe({ topic: 'x' }, 3)
  h.startTimer()()
  h.reset()
  t.equal(m.get('h_count'), 2)
  t.equal(m.get('h_sum', { topic: 'x' }), 3)
  m.avgMinMax().set([1, 2])
  t.equal(m.get('missing'), 0)
})

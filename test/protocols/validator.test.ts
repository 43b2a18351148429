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

t.test('one topic, one codec: the same codec again is fine, another for its topic throws TopicCodecError', async (t) => {
  const v = new GossipValidator({ metrics: new MetricsStore(), log: createLogger('silent') })
  v.add(systemEventCodec)
  v.add(systemEventCodec)
  t.throws(() => { v.add({ ...systemEventCodec }) }, { name: 'TopicCodecError', code: 'ERR_TOPIC_CODEC' })
  const good = signed(systemEventCodec.topic, systemEventCodec.encode({ v: 1, type: 'member.leave', at: 1, startedAt: 1 }))
  t.equal(v.validate(peer, good), TopicValidatorResult.Accept, 'the first codec still validates its topic')
})

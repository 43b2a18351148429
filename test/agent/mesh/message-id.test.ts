import type { Message } from '@libp2p/gossipsub'
import { peerIdFromString } from '@libp2p/peer-id'
import t from 'tap'
import { fastMessageId, shortMessageId } from '../../../agent/mesh/mesh.ts'

const a = peerIdFromString('12D3KooWQwdqLaMv2dPBv1WVywHdTerao7cMJEuVyEuGUTJTz1hJ')
const b = peerIdFromString('12D3KooWKHF9vRoHBjs3SarShomQB4hySRgFn2EFw5CdeZPEgGDn')
const msg = (from: typeof a, seq: bigint, data = 'x'): Message => ({
  type: 'signed', from, sequenceNumber: seq, topic: 't', data: new TextEncoder().encode(data), signature: new Uint8Array(64), key: undefined as never
})
const hex = (m: Message) => Buffer.from(shortMessageId(m)).toString('hex')

t.test('message ids: 8 bytes, one per sender and sequence number', async (t) => {
  t.equal(shortMessageId(msg(a, 1n)).byteLength, 8)
  t.equal(hex(msg(a, 1n)), hex(msg(a, 1n, 'other data')), 'the id names the message, not its bytes')
  t.not(hex(msg(a, 1n)), hex(msg(a, 2n)))
  t.not(hex(msg(a, 1n)), hex(msg(b, 1n)))
  t.throws(() => shortMessageId({ type: 'unsigned', topic: 't', data: new Uint8Array() }), /always signed/)
})

t.test('gossipsub\'s first duplicate check keys a message by sender and sequence number as sent, before its signature is checked', async (t) => {
  const rpc = (from: typeof a, seq: number, data = 'x', signature = new Uint8Array(64)) => ({
    from: from.toMultihash().bytes, seqno: new Uint8Array([0, 0, 0, 0, 0, 0, 0, seq]), topic: 't', data: new TextEncoder().encode(data), signature
  })
  t.equal(fastMessageId(rpc(a, 1)), fastMessageId(rpc(a, 1, 'other data', new Uint8Array(64).fill(1))), 'the copies of one message share a key')
  t.not(fastMessageId(rpc(a, 1)), fastMessageId(rpc(a, 2)))
  t.not(fastMessageId(rpc(a, 1)), fastMessageId(rpc(b, 1)))
  t.equal(fastMessageId({ topic: 't', data: new Uint8Array() }), '', 'unsigned: no key (it fails verification, so nothing is recorded under it)')
})

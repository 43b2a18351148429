import type { Message } from '@libp2p/gossipsub'
import { peerIdFromString } from '@libp2p/peer-id'
import t from 'tap'
import { shortMessageId } from '../../../agent/mesh/mesh.ts'

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

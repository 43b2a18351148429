import { publicKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { RPC } from '@libp2p/gossipsub/message'
import type { GossipSub } from '@libp2p/gossipsub'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'

/** A gossip message on `topic` carrying `data`, signed with `key` as gossipsub signs for that key's peer (any key holder can). */
export async function signedMessage (key: PrivateKey, topic: string, data: Uint8Array, seqno: bigint) {
  const seq = new Uint8Array(8)
  new DataView(seq.buffer).setBigUint64(0, seqno)
  const message = { from: peerIdFromPrivateKey(key).toMultihash().bytes, data, seqno: seq, topic }
  const signed = new Uint8Array([...new TextEncoder().encode('libp2p-pubsub:'), ...RPC.Message.encode(message)])
  return { ...message, signature: await key.sign(signed), key: publicKeyToProtobuf(key.publicKey) }
}

/**
 * Hands `message` straight to `to` over `from`'s gossipsub, whatever `to` subscribes to (as a rogue member can);
 * whether it was sent. gossipsub counts `to` as a peer once either side's stream is up, and sends nothing until
 * its own stream to `to` is open, so this waits for that stream (up to `timeoutMs`) instead of racing it.
 */
export async function sendRaw (from: GossipSub, to: string, message: Awaited<ReturnType<typeof signedMessage>>, timeoutMs = 5_000): Promise<boolean> {
  const internals = from as unknown as { sendRpc: (to: string, rpc: unknown) => boolean, streamsOutbound: Map<string, unknown> }
  const deadline = Date.now() + timeoutMs
  while (!internals.streamsOutbound.has(to) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
  return internals.sendRpc(to, { subscriptions: [], messages: [message] })
}

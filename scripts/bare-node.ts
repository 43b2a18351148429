import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { gossipsub } from '@libp2p/gossipsub'
import type { GossipSub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { preSharedKey } from '@libp2p/pnet'
import { tcp } from '@libp2p/tcp'
import type { PrivateKey } from '@libp2p/interface'
import { createLibp2p } from 'libp2p'
import { MEMBER_PING_STREAM_MS } from '../agent/mesh/mesh.ts'

/**
 * A bare libp2p node inside a mesh's private network: the agent's transport stack and gossipsub, none of its
 * logic (it answers pings, so it stays a live member while it beacons). Tests and `mesh-publish` use it to play
 * a peer (a rogue, a crowd) that the agent must cope with.
 */
export async function bareNode (psk: Uint8Array, signaturePolicy: 'StrictSign' | 'StrictNoSign' = 'StrictSign', privateKey?: PrivateKey) {
  const node = await createLibp2p({
    privateKey,
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionProtector: preSharedKey({ psk }),
    services: {
      identify: identify(),
      ping: ping(),
      memberPing: ping({ protocolPrefix: 'noodle', timeout: MEMBER_PING_STREAM_MS }),
      pubsub: gossipsub({ globalSignaturePolicy: signaturePolicy, allowPublishToZeroTopicPeers: true })
    }
  })
  return node as typeof node & { services: { pubsub: GossipSub } }
}

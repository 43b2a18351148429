import { z } from 'zod'
import { versionedJson } from './codec.ts'
import { multiaddrText, peerIdText } from '../common/text.ts'

/**
 * Member sync, Serf's push/pull on join: when a connection opens, the side that dialled sends the members it
 * knows and reads the other side's, over one stream. A newcomer so learns every member from whichever one it
 * reached first and dials them all at once. Of other members only whereabouts travel: a member becomes `alive`
 * on its own beacon, never on hearsay. Each side adds its own beacon, record included (`self`): the connection
 * authenticates its author as gossip's signature does, and it reaches the newcomer with the connection, where
 * gossip must wait for gossipsub's streams (opened one peer at a time: the last of 15 some 700 ms later, bench/mesh).
 * `self` is the health message's own bytes (base64), read with the health topic's codec, whose checks and limits
 * it meets as on gossip; one that fails them is dropped and counted there, and the list is still read. Older
 * agents leave `self` out, and ignore it.
 */
export const MEMBER_SYNC_PROTOCOL = '/noodle/member-sync/1.0.0'

export const MemberSyncSchema = z.object({
  v: z.literal(1),
  members: z.array(z.object({
    peerId: peerIdText,
    addrs: z.array(multiaddrText).min(1).max(8)
  })).max(1024),
  /** Base64 of a `noodle/2/node.health` message (at most its codec's 16 KiB, so this stays under 22 kB). */
  self: z.string().max(22 * 1024).optional()
})

export type MemberSyncMessage = z.infer<typeof MemberSyncSchema>

/** 1024 members with a few addresses each stay well under this. */
export const memberSyncCodec = versionedJson(256 * 1024, 1, MemberSyncSchema)

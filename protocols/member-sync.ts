import { z } from 'zod'
import { versionedJson } from './codec.ts'
import { multiaddrText, peerIdText } from '../common/text.ts'
import { HealthWireSchema } from './health.ts'

/**
 * Member sync, Serf's push/pull on join: when a connection opens, the side that dialled sends the members it
 * knows and reads the other side's, over one stream. A newcomer so learns every member from whichever one it
 * reached first and dials them all at once. Only whereabouts travel of others: a member becomes `alive` on its
 * own beacon, never on hearsay. Each side adds its own beacon, record included (`self`): the connection
 * authenticates its author as gossip's signature does, and it reaches the newcomer with the connection, where
 * gossip must wait for gossipsub's streams (opened one peer at a time: the last of 15 some 700 ms later, bench/mesh).
 * Older agents leave `self` out, and ignore it.
 */
export const MEMBER_SYNC_PROTOCOL = '/noodle/member-sync/1.0.0'

export const MemberSyncSchema = z.object({
  v: z.literal(1),
  members: z.array(z.object({
    peerId: peerIdText,
    addrs: z.array(multiaddrText).min(1).max(8)
  })).max(1024),
  self: HealthWireSchema.optional()
})

export type MemberSyncMessage = z.infer<typeof MemberSyncSchema>

/** 1024 members with a few addresses each stay well under this. */
export const memberSyncCodec = versionedJson(256 * 1024, 1, MemberSyncSchema)

import { z } from 'zod'
import { jsonCodec } from './codec.ts'
import { peerIdText } from '../common/text.ts'
import { TOPICS } from './topics.ts'

const count = z.int().nonnegative()

/**
 * A member found another dead with its own probe (its connection refused, or two pings unanswered), in a partial
 * mesh, where most members hold no connection to the dead one and would otherwise notice only its silence. A
 * verdict kills nobody: whoever hears it probes the member at once, and only that probe decides (so a member
 * that lies about another costs the mesh a ping each). `about` names the dead member's beacon the finding was
 * made against: a newer one (it came back, or never died) voids it.
 */
export const MemberVerdictSchema = z.object({
  v: z.literal(1),
  peerId: peerIdText,
  about: z.object({ startedAt: count, seq: count })
})

export type MemberVerdict = z.infer<typeof MemberVerdictSchema>

export const memberVerdictCodec = jsonCodec(TOPICS.memberVerdicts, 1024, 1, MemberVerdictSchema)

import { z } from 'zod'
import { jsonCodec } from './codec.ts'
import { TOPICS } from './topics.ts'

/** A member says it is leaving on purpose (SIGTERM, `systemctl stop`), so others list it `left`, not `dead`. */
const MemberLeaveSchema = z.object({
  v: z.literal(1),
  type: z.literal('member.leave'),
  at: z.int().nonnegative(),
  startedAt: z.int().nonnegative()
})

export const SystemEventSchema = z.discriminatedUnion('type', [MemberLeaveSchema])

export type SystemEvent = z.infer<typeof SystemEventSchema>

export const systemEventCodec = jsonCodec(TOPICS.systemEvents, 16 * 1024, 1, SystemEventSchema)

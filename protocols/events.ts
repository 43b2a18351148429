import { z } from 'zod'
import { jsonCodec } from './codec.ts'
import { nameText } from '../common/text.ts'
import { TOPICS } from './topics.ts'

/** A member says it is leaving on purpose (SIGTERM, `systemctl stop`), so others list it `left`, not `dead`. */
const MemberLeaveSchema = z.object({
  v: z.literal(1),
  type: z.literal('member.leave'),
  at: z.int().nonnegative(),
  startedAt: z.int().nonnegative()
})

/** An operator account was created on a node (its id and name: never the email or anything secret). */
const OperatorRegisteredSchema = z.object({
  v: z.literal(1),
  type: z.literal('operator.registered'),
  at: z.int().nonnegative(),
  userId: z.uuid(),
  username: nameText
})

export const SystemEventSchema = z.discriminatedUnion('type', [MemberLeaveSchema, OperatorRegisteredSchema])

export type SystemEvent = z.infer<typeof SystemEventSchema>

export const systemEventCodec = jsonCodec(TOPICS.systemEvents, 16 * 1024, 1, SystemEventSchema)

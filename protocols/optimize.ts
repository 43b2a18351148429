import { z } from 'zod'
import { versionedJson } from './codec.ts'
import { DECISION_ACTIONS } from './decisions.ts'
import { nameText, peerIdText } from '../common/text.ts'

/** Any node asks the coordinator for a fresh placement over this stream protocol (`POST /api/v1/ahr/optimize`). */
export const OPTIMIZE_PROTOCOL = '/noodle/optimize/1.0.0'

export const OptimizeRequestSchema = z.object({ v: z.literal(1) })

const DecisionSummarySchema = z.object({
  id: nameText,
  target: peerIdText,
  action: z.enum(DECISION_ACTIONS),
  workId: nameText,
  reason: z.string().max(300)
})

export const OptimizeResponseSchema = z.object({
  v: z.literal(1),
  term: z.int().nonnegative(),
  coordinator: peerIdText,
  decisions: z.array(DecisionSummarySchema).max(256)
})

export type OptimizeResponse = z.infer<typeof OptimizeResponseSchema>
export type DecisionSummary = z.infer<typeof DecisionSummarySchema>

export const optimizeRequestCodec = versionedJson(64, 1, OptimizeRequestSchema)
export const optimizeResponseCodec = versionedJson(64 * 1024, 1, OptimizeResponseSchema)

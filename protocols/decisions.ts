import { z } from 'zod'
import { jsonCodec } from './codec.ts'
import { nameText, peerIdText } from '../common/text.ts'
import { TOPICS } from './topics.ts'
import { WorkItemWireSchema } from './work.ts'

export const DECISION_ACTIONS = ['run', 'stop'] as const
export const DECISION_OUTCOMES = ['applied', 'rejected', 'stale'] as const
export type DecisionOutcome = typeof DECISION_OUTCOMES[number]

const term = z.int().positive()

/**
 * The coordinator tells one node to run or stop one piece of work. Its `term` fences it: a node applies it only
 * while the sender is the coordinator of exactly that term, so an old coordinator's word is never acted on.
 * The sender is the gossip message's signed `from`.
 */
const DecisionSchema = z.object({
  v: z.literal(1),
  type: z.literal('decision'),
  id: nameText,
  term,
  target: peerIdText,
  action: z.enum(DECISION_ACTIONS),
  work: WorkItemWireSchema,
  /** The work's home node: where its data is. */
  home: peerIdText,
  reason: z.string().min(1).max(300),
  at: z.int().nonnegative(),
  /**
   * The coordinator's count of the decisions it made in this term (from 1): a target applies none older than
   * the last it applied for the same work, whatever the clocks say. 0 from agents that predate it: not compared.
   */
  seq: z.int().nonnegative().max(Number.MAX_SAFE_INTEGER).default(0)
})

/** The target's answer: what it did with decision `id`. */
const DecisionResultSchema = z.object({
  v: z.literal(1),
  type: z.literal('result'),
  id: nameText,
  term,
  outcome: z.enum(DECISION_OUTCOMES),
  detail: z.string().max(300),
  at: z.int().nonnegative()
})

export const DecisionMessageSchema = z.discriminatedUnion('type', [DecisionSchema, DecisionResultSchema])
export type DecisionMessage = z.infer<typeof DecisionMessageSchema>
export type Decision = z.infer<typeof DecisionSchema>
export type DecisionResult = z.infer<typeof DecisionResultSchema>

export const decisionCodec = jsonCodec(TOPICS.optimizationDecisions, 8 * 1024, 1, DecisionMessageSchema)

/**
 * Gossip topics, namespaced and versioned: `noodle/<wire version>/<subject>`. A change that old agents cannot
 * read gets a new topic version, so old and new agents never misread each other's messages.
 */
export const TOPICS = {
  /** v2: binary pulses and records (protocols/health.ts); agents no longer read or send `noodle/1/node.health`. */
  nodeHealth: 'noodle/2/node.health',
  systemEvents: 'noodle/1/system.events',
  /** A partial mesh's word that a member died (protocols/verdicts.ts): a reason to probe it, never to list it dead. */
  memberVerdicts: 'noodle/1/member.verdict',
  optimizationDecisions: 'noodle/1/optimization.decisions',
  modelCompilation: 'noodle/1/model.compilation',
  /** Cameras' inference results, never frames: the wire name `media.frames` is historical, kept so agents agree. */
  cameraResults: 'noodle/1/media.frames',
  /** Objects cameras followed: new, update, end (protocols/media.ts). */
  cameraEvents: 'noodle/1/media.events'
} as const

export type Topic = typeof TOPICS[keyof typeof TOPICS]

import type { MessageCodec } from './codec.ts'
import { decisionCodec } from './decisions.ts'
import { systemEventCodec } from './events.ts'
import { healthCodec } from './health.ts'
import { cameraEventCodec, cameraResultCodec } from './media.ts'
import { modelCompiledCodec } from './models.ts'
import { memberVerdictCodec } from './verdicts.ts'

/** Every gossip topic's codec, by topic: what a tool needs to speak a topic as a member does. */
export const GOSSIP_CODECS: ReadonlyMap<string, MessageCodec<any>> = new Map(
  [healthCodec, systemEventCodec, memberVerdictCodec, decisionCodec, modelCompiledCodec, cameraResultCodec, cameraEventCodec].map((c) => [c.topic, c])
)

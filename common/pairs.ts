/**
 * Whether `self` is the one of the pair (self, other) that acts first where both could (pings the other, dials
 * it after a heal): both work it out alike from the two ids, and it falls to either side about as often (by "the
 * lower id", one box would act for every pair it is in).
 */
export function pairLeader (self: string, other: string): boolean {
  const [low, high] = self < other ? [self, other] : [other, self]
  let hash = 0
  for (const id of [low, high]) for (let i = 0; i < id.length; i++) hash = (Math.imul(hash, 31) + id.charCodeAt(i)) | 0
  return ((hash & 1) === 0) === (self === low)
}

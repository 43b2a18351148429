import { isDeepStrictEqual } from 'node:util'

export interface EventuallyOptions {
  timeoutMs?: number
  intervalMs?: number
}

/**
 * Polls `observe` until what it returns deep-equals `expected` (or, when `expected` is a function, until it
 * accepts the value), and resolves to what it saw last. It does not throw on timeout: the caller asserts on the
 * value, `t.same(await eventually(observe, expected), expected)`, or with a function `t.match(seen, pattern)`, so
 * a test that fails shows a diff of what was seen instead of a bare timeout. An `observe` that throws is polled
 * again; if it still throws when time is up, that error is the failure.
 */
export async function eventually<T> (observe: () => T | Promise<T>, expected: T | ((seen: T) => boolean),
  { timeoutMs = 15_000, intervalMs = 100 }: EventuallyOptions = {}): Promise<T> {
  const done = typeof expected === 'function' ? expected as (seen: T) => boolean : (seen: T) => isDeepStrictEqual(seen, expected)
  const deadline = Date.now() + timeoutMs
  for (;;) {
    let seen: T
    try {
      seen = await observe()
    } catch (err) {
      if (Date.now() > deadline) throw err
      await new Promise((resolve) => setTimeout(resolve, intervalMs))
      continue
    }
    if (done(seen) || Date.now() > deadline) return seen
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}

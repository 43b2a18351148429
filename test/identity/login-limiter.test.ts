import t from 'tap'
import { LoginLimiter } from '../../identity/login-limiter.ts'

t.test('5 failures in 15 minutes lock an account until the oldest is 15 minutes old; a success clears them', async (t) => {
  let now = 1_000_000
  const limiter = new LoginLimiter({ now: () => now })
  const fail = async () => await limiter.attempt('ana', async () => ({ ok: false, value: null }))
  for (let i = 0; i < 5; i++) { await fail(); now += 60_000 }
  await t.rejects(fail(), { code: 'ERR_TOO_MANY_ATTEMPTS', retryAfterS: 600, httpStatus: 429 })
  await t.resolves(limiter.attempt('bob', async () => ({ ok: true, value: 1 })), 'other accounts are not affected')
  now += 600_000
  await fail()
  await t.rejects(fail(), { code: 'ERR_TOO_MANY_ATTEMPTS' }, 'the oldest failure aged out, the new one counts')
  now += 15 * 60_000
  t.same(await limiter.attempt('ana', async () => ({ ok: true, value: 'in' })), { ok: true, value: 'in' })
  for (let i = 0; i < 4; i++) await fail()
  await t.resolves(fail(), 'a success cleared the earlier failures')
})

t.test('at most two password checks at once, one per address; the rest wait their turn, then are refused', async (t) => {
  const limiter = new LoginLimiter()
  let release = (): void => {}
  const gate = new Promise<void>((resolve) => { release = resolve })
  const started: string[] = []
  const slow = async (account: string, address: string) => await limiter.attempt(account, async () => { started.push(account); await gate; return { ok: true, value: account } }, address)
  const first = slow('a1', 'A')
  const second = slow('a2', 'A')
  const third = slow('a3', 'A')
  await t.rejects(slow('a4', 'A'), { code: 'ERR_TOO_MANY_ATTEMPTS', retryAfterS: 1 }, 'one address: one check and two waiting, more refused at once')
  const other = slow('b1', 'B')
  await new Promise((resolve) => setImmediate(resolve))
  t.same(started, ['a1', 'b1'], 'the second slot goes to another address, not to A\'s next login')
  release()
  t.same(await Promise.all([first, second, third, other]), ['a1', 'a2', 'a3', 'b1'].map((value) => ({ ok: true, value })), 'the waiting ones ran in turn')
  t.same(started, ['a1', 'b1', 'a2', 'a3'])
})

t.test('a login that waits past 2 s for a slot is refused, and does not count as a failure', async (t) => {
  let now = 0
  const limiter = new LoginLimiter({ now: () => now })
  const gates: Array<() => void> = []
  const hold = async (address: string) => await limiter.attempt(`held-${address}`, async () => { await new Promise<void>((resolve) => gates.push(resolve)); return { ok: true, value: null } }, address)
  const held = [hold('A'), hold('B')]
  const started = Date.now()
  await t.rejects(limiter.attempt('late', async () => ({ ok: true, value: null }), 'C'), { code: 'ERR_TOO_MANY_ATTEMPTS', retryAfterS: 1 })
  t.ok(Date.now() - started >= 1_900, `refused after ${Date.now() - started} ms`)
  for (const open of gates) open()
  await Promise.all(held)
  now += 1
  for (let i = 0; i < 4; i++) await limiter.attempt('late', async () => ({ ok: false, value: null }), 'C')
  t.same(await limiter.attempt('late', async () => ({ ok: true, value: 'in' }), 'C'), { ok: true, value: 'in' }, 'the refused wait was not a failure: four more fit under five')
})

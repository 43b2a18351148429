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

t.test('at most two password checks at once', async (t) => {
  const limiter = new LoginLimiter()
  let release = (): void => {}
  const gate = new Promise<void>((resolve) => { release = resolve })
  const slow = async () => await limiter.attempt('x', async () => { await gate; return { ok: true, value: null } })
  const first = slow()
  const second = slow()
  await t.rejects(limiter.attempt('y', async () => ({ ok: true, value: null })), { code: 'ERR_TOO_MANY_ATTEMPTS', retryAfterS: 1 })
  release()
  await Promise.all([first, second])
  await t.resolves(limiter.attempt('y', async () => ({ ok: true, value: null })))
})

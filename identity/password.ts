import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto'
import type { ScryptOptions } from 'node:crypto'

/**
 * Operator passwords: scrypt, memory-hard, with one of OWASP's parameter sets (N=2^16, r=8, p=2: 64 MiB per
 * hash, which is what makes guessing dear; the 128 MiB set is a lot for a 512 MB box). node:crypto runs it on
 * the thread pool, off the event loop.
 * Stored as `scrypt$N$r$p$salt$hash` (base64), so parameters can be raised later without breaking old hashes.
 */
const PARAMS = { N: 2 ** 16, r: 8, p: 2 }
const KEY_BYTES = 32
const WEAK = ['password', 'passw0rd', '123456', '1234', 'qwerty', 'letmein', 'admin', 'welcome', 'noodle']
const SALT_BYTES = 16

function derive (password: string, salt: Buffer, { N, r, p }: { N: number, r: number, p: number }): Promise<Buffer> {
  const options: ScryptOptions = { N, r, p, maxmem: 256 * N * r }
  return new Promise((resolve, reject) => {
    scrypt(password.normalize('NFKC'), salt, KEY_BYTES, options, (err, key) => { if (err !== null) reject(err); else resolve(key) })
  })
}

export async function hashPassword (password: string, params = PARAMS): Promise<string> {
  const salt = randomBytes(SALT_BYTES)
  const key = await derive(password, salt, params)
  return ['scrypt', params.N, params.r, params.p, salt.toString('base64'), key.toString('base64')].join('$')
}

/** Whether `password` matches a stored hash, compared in constant time. A malformed hash matches nothing. */
export async function verifyPassword (password: string, stored: string): Promise<boolean> {
  const [scheme, N, r, p, salt, key] = stored.split('$')
  if (scheme !== 'scrypt' || salt === undefined || key === undefined) return false
  const expected = Buffer.from(key, 'base64')
  const actual = await derive(password, Buffer.from(salt, 'base64'), { N: Number(N), r: Number(r), p: Number(p) })
  return actual.length === expected.length && timingSafeEqual(actual, expected)
}

/**
 * What is wrong with a password, or null. NIST SP 800-63B's advice: length over composition rules, and no
 * password built from the account's own name. 12 characters, and not one repeated character or a plain run.
 */
export function passwordProblem (password: string, account: { username: string, email: string }): string | null {
  if ([...password].length < 12) return 'must be at least 12 characters'
  if ([...password].length > 256) return 'must be at most 256 characters'
  const lower = password.toLowerCase()
  if (new Set(lower).size < 5) return 'must not be mostly one repeated character'
  if (lower.includes(account.username.toLowerCase()) || lower.includes(account.email.toLowerCase().split('@')[0] ?? '\0')) {
    return 'must not contain the username or the email\'s name'
  }
  // A well-known weak word with a little added ("password1234") is as weak as the word.
  if ([...WEAK.reduce((rest, weak) => rest.replaceAll(weak, ''), lower)].length < 8) return 'is too easy to guess'

  return null
}

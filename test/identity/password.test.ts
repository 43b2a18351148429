import t from 'tap'
import { hashPassword, passwordProblem, verifyPassword } from '../../identity/password.ts'

t.test('a hash is salted scrypt that verifies the password and nothing else', async (t) => {
  const hash = await hashPassword('correct horse battery staple')
  t.match(hash, /^scrypt\$65536\$8\$2\$[A-Za-z0-9+/=]{24}\$[A-Za-z0-9+/=]{44}$/)
  t.notOk(hash.includes('horse'), 'never the password itself')
  t.not(await hashPassword('correct horse battery staple'), hash, 'a fresh salt each time')
  t.equal(await verifyPassword('correct horse battery staple', hash), true)
  t.equal(await verifyPassword('correct horse battery stapler', hash), false)
  t.equal(await verifyPassword('anything', 'bcrypt$whatever'), false, 'a hash it does not know matches nothing')
})

t.test('password strength: length first, not the account\'s own name, not a known weak one', async (t) => {
  const account = { username: 'ana', email: 'ana.lopez@example.com' }
  t.equal(passwordProblem('short1!', account), 'must be at least 12 characters')
  t.equal(passwordProblem('aaaaaaaaaaaaaaaa', account), 'must not be mostly one repeated character')
  t.equal(passwordProblem('my-ana-password-99', account), 'must not contain the username or the email\'s name')
  t.equal(passwordProblem('ana.lopez-rocks-2026', { username: 'ana-l', email: 'ana.lopez@example.com' }), 'must not contain the username or the email\'s name')
  t.equal(passwordProblem('password1234', account), 'is too easy to guess')
  t.equal(passwordProblem('x'.repeat(257) + 'abcdefg', account), 'must be at most 256 characters')
  t.equal(passwordProblem('correct horse battery staple', account), null)
})

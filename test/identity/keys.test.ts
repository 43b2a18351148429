import { readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { IdentityError } from '../../common/errors.ts'
import { ensureDataDir, ensureSwarmKey, generateSwarmKey, loadOrCreateIdentity, readSwarmKey } from '../../identity/keys.ts'

t.test('identity is created once, private, and stable across loads', async (t) => {
  const dir = join(t.testdir(), 'data')
  ensureDataDir(dir)
  t.equal(statSync(dir).mode & 0o777, 0o710, 'data dir is 0710: the group passes through to the socket')
  const first = await loadOrCreateIdentity(dir)
  t.equal(first.created, true)
  t.equal(statSync(join(dir, 'identity.key')).mode & 0o777, 0o600, 'key file is 0600')
  const second = await loadOrCreateIdentity(dir)
  t.equal(second.created, false)
  t.equal(second.peerId.toString(), first.peerId.toString(), 'same peer id after a reload')
  t.match(first.peerId.toString(), /^12D3KooW/, 'Ed25519 peer id')
  writeFileSync(join(dir, 'identity.key'), 'garbage')
  await t.rejects(loadOrCreateIdentity(dir), IdentityError, 'a corrupt key file is an error, never silently replaced')
})

t.test('swarm keys: generated in the pnet format, validated on read, never overwritten', async (t) => {
  const dir = t.testdir()
  const key = generateSwarmKey()
  t.match(key, /^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}\n$/)
  t.not(generateSwarmKey(), key, 'each one is new')
  const file = join(dir, 'swarm.key')
  t.equal(ensureSwarmKey(file), true)
  const written = readFileSync(file, 'utf8')
  t.equal(ensureSwarmKey(file), false, 'an existing key is kept')
  t.equal(readFileSync(file, 'utf8'), written)
  t.equal(statSync(file).mode & 0o777, 0o600)
  t.equal(readSwarmKey(file).byteLength, 95, 'the 95 bytes @libp2p/pnet expects')
  writeFileSync(file, written.replace('/base16/', '/base64/'))
  t.throws(() => readSwarmKey(file), { code: 'ERR_IDENTITY', message: /not a swarm key/ })
  writeFileSync(file, written.toUpperCase().replace('/KEY/SWARM/PSK/1.0.0/', '/key/swarm/psk/1.0.0/').replace('/BASE16/', '/base16/'))
  t.equal(readSwarmKey(file).byteLength, 95, 'upper-case hex is accepted')
  t.throws(() => readSwarmKey(join(dir, 'none')), { message: /noodle init/ }, 'a missing key says how to get one')
  t.throws(() => ensureSwarmKey(join(dir, 'no', 'such', 'dir', 'k')), IdentityError)
})

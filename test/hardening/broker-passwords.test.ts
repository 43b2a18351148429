import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { createLogger } from '../../common/logger.ts'
import { PacketSizeGuard } from '../../agent/ingest/mqtt-broker.ts'
import { MAX_PBKDF2_ITERATIONS, PasswordFile, parseHash, parsePasswordFile, passwordMatches } from '../../agent/ingest/mqtt-passwords.ts'
import { commandExists, tempDir, waitFor } from '../helpers/agents.ts'

const MOSQUITTO_PASSWD = '/usr/bin/mosquitto_passwd'
const KEY = 'mqtt.embeddedBroker.passwordFile'
const HASH = Buffer.alloc(64, 1).toString('base64')
const SALT = Buffer.alloc(12, 2).toString('base64')

t.test('hashes as mosquitto_passwd writes them verify, in both of its formats', { skip: commandExists(MOSQUITTO_PASSWD) ? false : 'no mosquitto_passwd' }, async (t) => {
  const file = join(tempDir(t), 'passwd')
  execFileSync(MOSQUITTO_PASSWD, ['-c', '-b', file, 'new', 'pass:with spaces'])
  execFileSync(MOSQUITTO_PASSWD, ['-H', 'sha512', '-b', file, 'old', 'plain'])
  const users = parsePasswordFile(readFileSync(file, 'utf8'), KEY)
  t.same([...users.keys()], ['new', 'old'])
  t.equal(users.get('new')?.scheme, 'pbkdf2-sha512')
  t.equal(users.get('old')?.scheme, 'sha512')
  t.equal(await passwordMatches(users.get('new') as never, Buffer.from('pass:with spaces')), true)
  t.equal(await passwordMatches(users.get('new') as never, Buffer.from('pass:with space')), false)
  t.equal(await passwordMatches(users.get('old') as never, Buffer.from('plain')), true)
  t.equal(await passwordMatches(users.get('old') as never, Buffer.from('Plain')), false)
})

t.test('a password file that is not what mosquitto_passwd writes is refused, naming the line', async (t) => {
  const cases: Array<[string, string, RegExp]> = [
    ['plain text', 'u:secret', /line 1: the password of "u" is not a \$6\$ or \$7\$ hash .*mosquitto_passwd -U/],
    ['no colon', 'just-a-name', /line 1 is not "user:hash"/],
    ['no user', `:$6$${SALT}$${HASH}`, /line 1 is not "user:hash"/],
    ['a user twice', `u:$6$${SALT}$${HASH}\nu:$6$${SALT}$${HASH}`, /line 2: user "u" is listed twice/],
    ['$6$ with a field too many', `u:$6$1$${SALT}$${HASH}`, /a \$6\$ hash has the form/],
    ['$7$ without iterations', `u:$7$${SALT}$${HASH}`, /a \$7\$ hash has the form/],
    ['iterations not a number', `u:$7$ten$${SALT}$${HASH}`, /iteration count must be a whole number/],
    ['no iterations', `u:$7$0$${SALT}$${HASH}`, /iteration count must be a whole number/],
    ['too many iterations', `u:$7$${MAX_PBKDF2_ITERATIONS + 1}$${SALT}$${HASH}`, /iteration count must be a whole number from 1 to 10000000/],
    ['a salt that is not base64', `u:$6$not*base64$${HASH}`, /its salt is not base64/],
    ['an empty hash', `u:$6$${SALT}$`, /its hash is not base64/],
    ['a short hash', `u:$6$${SALT}$${Buffer.alloc(32).toString('base64')}`, /its hash is 32 bytes, not 64/]
  ]
  for (const [what, text, message] of cases) {
    t.throws(() => parsePasswordFile(text, KEY), { code: 'ERR_CONFIG', key: KEY, message }, what)
  }
  const users = parsePasswordFile(`# a comment\n\nu:$7$101$${SALT}$${HASH}\r\n`, KEY)
  t.same(users.get('u'), parseHash(`$7$101$${SALT}$${HASH}`), 'comments, blank lines and CRLF endings are fine')
})

t.test('the password file is read again when it changes; a broken change keeps the users read before', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'passwd')
  const log = createLogger('silent')
  t.throws(() => { new PasswordFile({ file, key: KEY, log }).load() }, { code: 'ERR_CONFIG', key: KEY, message: /cannot read .*passwd/ })
  const line = (user: string, password: string): string => {
    const salt = Buffer.alloc(12, user.length)
    return `${user}:$6$${salt.toString('base64')}$${createHash('sha512').update(password).update(salt).digest('base64')}\n`
  }
  writeFileSync(file, line('first', 'one'))
  const passwords = new PasswordFile({ file, key: KEY, log, pollMs: 20 })
  passwords.start()
  t.teardown(() => { passwords.stop() })
  t.equal(await passwords.check('first', Buffer.from('one')), true)
  t.equal(await passwords.check('first', undefined), false, 'no password')
  t.equal(await passwords.check(undefined, Buffer.from('one')), false, 'no user')
  t.equal(await passwords.check('second', Buffer.from('two')), false, 'an unknown user')
  writeFileSync(file, 'second:plain-text-by-mistake\n')
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.equal(await passwords.check('first', Buffer.from('one')), true, 'a broken file keeps the users read before')
  writeFileSync(file, line('second', 'two'))
  t.equal(await waitFor('the new user', async () => await passwords.check('second', Buffer.from('two')), 5_000), true)
  t.equal(await passwords.check('first', Buffer.from('one')), false, 'a user taken out of the file is out')
  t.equal(passwords.size, 1)
})

t.test('the packet size guard sees each packet\'s size in its header, however the bytes are split', async (t) => {
  const publish = (bodyBytes: number): Buffer => {
    const length: number[] = []
    let n = bodyBytes
    do {
      let byte = n % 128
      n = Math.floor(n / 128)
      if (n > 0) byte |= 0x80
      length.push(byte)
    } while (n > 0)
    return Buffer.concat([Buffer.from([0x30, ...length]), Buffer.alloc(bodyBytes)])
  }
  const ping = Buffer.from([0xc0, 0x00])
  const limit = 1 + 2 + 300 // a 300-byte body takes a 2-byte length
  const whole = Buffer.concat([ping, publish(300), ping, publish(300)])
  t.equal(new PacketSizeGuard(limit).accept(whole), true, 'packets at the limit pass, in one chunk')
  const byteByByte = new PacketSizeGuard(limit)
  t.equal([...whole].every((byte) => byteByByte.accept(Buffer.from([byte]))), true, 'and one byte at a time')
  t.equal(new PacketSizeGuard(limit).accept(publish(301).subarray(0, 3)), false, 'one byte over: refused from its header alone')
  const split = new PacketSizeGuard(limit)
  const over = publish(20_000)
  t.same([split.accept(over.subarray(0, 2)), split.accept(over.subarray(2, 4))], [true, false], 'a length split across reads')
  t.equal(new PacketSizeGuard(268_435_460).accept(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])), false,
    'a remaining length longer than 4 bytes is malformed')
})

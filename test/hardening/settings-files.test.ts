import { execFile, execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { readSmallFile } from '../../common/files.ts'
import { tempDir, writeSwarmKey } from '../helpers/agents.ts'

const BIN = fileURLToPath(new URL('../../bin/noodle', import.meta.url))

/** Runs `noodle agent`, which must give up at once: its exit code and what it said. */
async function agentFails (args: string[]): Promise<{ code: number | null, err: string }> {
  return await new Promise((resolve) => {
    execFile(BIN, ['agent', ...args], { timeout: 20_000 }, (error, _stdout, stderr) => {
      resolve({ code: error === null ? 0 : (error as { code?: number }).code ?? null, err: stderr })
    })
  })
}

t.test('a file an operator names is read only when it is a regular file, and never past its cap', async (t) => {
  const dir = t.testdir()
  const fifo = join(dir, 'fifo')
  execFileSync('mkfifo', [fifo])
  const small = join(dir, 'small')
  writeFileSync(small, 'x'.repeat(10))
  t.equal(readSmallFile(small, 10).toString(), 'x'.repeat(10))
  t.throws(() => readSmallFile(small, 9), { message: 'it is over 9 bytes' })
  t.throws(() => readSmallFile('/dev/zero'), { message: 'it is not a regular file' })
  t.throws(() => readSmallFile(fifo), { message: 'it is not a regular file' })
  t.throws(() => readSmallFile(join(dir, 'none')), { code: 'ENOENT' })
})

t.test('an agent given a device, a FIFO or a huge file for a setting refuses to start, naming it; it never hangs or runs out of memory', async (t) => {
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const fifo = join(root, 'fifo')
  execFileSync('mkfifo', [fifo])
  const huge = join(root, 'huge.json')
  writeFileSync(huge, `{"name":"${'x'.repeat(2 * 1024 * 1024)}"}`)
  const common = ['--data-dir', join(root, 'data'), '--swarm-key', swarmKeyFile]
  const config = (name: string, settings: unknown) => { const f = join(root, name); writeFileSync(f, JSON.stringify(settings)); return f }
  for (const [why, args, said] of [
    ['the config file is /dev/zero', ['--config', '/dev/zero'], /config: cannot read \/dev\/zero: it is not a regular file/],
    ['the config file is a FIFO', ['--config', fifo], /config: cannot read .*fifo: it is not a regular file/],
    ['the config file is 2 MiB', ['--config', huge], /config: cannot read .*huge\.json: it is over 1048576 bytes/],
    ['the camera credentials are a FIFO', ['--config', config('creds.json', { cameraCredentialsFile: fifo })], /cameraCredentialsFile: cannot read .*fifo as JSON: it is not a regular file/],
    ['the swarm key is /dev/zero', ['--data-dir', join(root, 'data'), '--swarm-key', '/dev/zero'], /cannot read swarm key \/dev\/zero: it is not a regular file/]
  ] as const) {
    const { code, err } = await agentFails(why.startsWith('the swarm key') ? [...args] : [...common, ...args])
    t.not(code, 0, `${why}: the agent does not start`)
    t.match(err, said, `${why}: it says so`)
  }
})

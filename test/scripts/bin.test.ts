import { execFile, execFileSync } from 'node:child_process'
import { chmodSync, copyFileSync, mkdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { commandExists, tempDir } from '../helpers/agents.ts'

const BIN = fileURLToPath(new URL('../../bin/noodle', import.meta.url))
const NOBODY = 65534

/**
 * bin/noodle laid out beside a stand-in for the pinned Node that prints the compile cache it was given, so the
 * test sees exactly what the real runtime would be told to load code from.
 */
function fakeInstall (dir: string): string {
  mkdirSync(join(dir, 'bin'))
  mkdirSync(join(dir, 'node_modules/node/bin'), { recursive: true })
  copyFileSync(BIN, join(dir, 'bin/noodle'))
  writeFileSync(join(dir, 'node_modules/node/bin/node'), '#!/bin/sh\nprintf "%s" "${NODE_COMPILE_CACHE-}"\n')
  chmodSync(join(dir, 'node_modules/node/bin/node'), 0o755)
  return join(dir, 'bin/noodle')
}

/** Runs `noodle` as `uid` (through setpriv), with TMPDIR set and the caller's cache settings cleared. */
function run (noodle: string, uid: number, env: Record<string, string>): Promise<string> {
  const clean: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }
  const [file, args] = uid === 0 ? [noodle, []] : ['setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', noodle]]
  return new Promise((resolve, reject) => {
    execFile(file, args as string[], { env: clean }, (err, stdout, stderr) => {
      if (err != null) reject(new Error(`${String(err)}: ${stderr}`))
      else resolve(stdout)
    })
  })
}

const asRoot = process.getuid?.() === 0 && commandExists('setpriv')

t.test('the compile cache is a folder of the user\'s own, never one another user prepared, and none for root', { skip: asRoot ? false : 'needs root and setpriv' }, async (t) => {
  const dir = tempDir(t)
  chmodSync(dir, 0o755)
  const noodle = fakeInstall(dir)
  const tmp = join(dir, 'tmp')
  mkdirSync(tmp)
  chmodSync(tmp, 0o1777)

  t.equal(await run(noodle, 0, { TMPDIR: tmp }), '', 'root runs without a cache')
  t.equal(await run(noodle, 0, { TMPDIR: tmp, NODE_COMPILE_CACHE: '/var/cache/chosen' }), '/var/cache/chosen', 'unless told where')

  const own = join(tmp, `noodle-compile-cache-${NOBODY}`)
  t.equal(await run(noodle, NOBODY, { TMPDIR: tmp }), own, 'another user gets one under TMPDIR')
  t.same({ uid: statSync(own).uid, mode: statSync(own).mode & 0o777 }, { uid: NOBODY, mode: 0o700 })
  t.equal(await run(noodle, NOBODY, { TMPDIR: tmp }), own, 'and keeps it')
  // systemd's CacheDirectory= (the unit's /var/cache/noodle, 0700), kept across restarts, where it is given.
  const cacheDirectory = join(dir, 'cache')
  mkdirSync(cacheDirectory, { mode: 0o700 })
  chmodSync(cacheDirectory, 0o700)
  execFileSync('chown', [`${NOBODY}:${NOBODY}`, cacheDirectory])
  t.equal(await run(noodle, NOBODY, { TMPDIR: tmp, CACHE_DIRECTORY: cacheDirectory }), cacheDirectory, 'the unit\'s cache directory, under systemd')
  chmodSync(cacheDirectory, 0o755)
  t.equal(await run(noodle, NOBODY, { TMPDIR: tmp, CACHE_DIRECTORY: cacheDirectory }), '', 'under the same checks: one others can read is not used')

  // Another local user got there first: a folder that user can write is never used.
  const planted = join(dir, 'planted')
  mkdirSync(planted)
  chmodSync(planted, 0o1777)
  mkdirSync(join(planted, `noodle-compile-cache-${NOBODY}`), { mode: 0o777 })
  chmodSync(join(planted, `noodle-compile-cache-${NOBODY}`), 0o777)
  t.equal(await run(noodle, NOBODY, { TMPDIR: planted }), '', 'a folder someone else made is not used')

  // Nor a link to a folder of the user's own, which another user could point elsewhere.
  const linked = join(dir, 'linked')
  mkdirSync(linked)
  chmodSync(linked, 0o1777)
  symlinkSync(own, join(linked, `noodle-compile-cache-${NOBODY}`))
  t.equal(await run(noodle, NOBODY, { TMPDIR: linked }), '', 'a link is not used')
})

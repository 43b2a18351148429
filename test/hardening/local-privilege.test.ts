import { execFile } from 'node:child_process'
import { chmodSync, statSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { BIN, commandExists, startAgent, stopAgents, tempDir, waitFor, writeSwarmKey } from '../helpers/agents.ts'

const NOBODY = 65534

/** Runs a command as `nobody` with the agent's group (root's, here) as its only supplementary group. */
function asGroupMember (gid: number, file: string, args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  return new Promise((resolve) => {
    execFile('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, `--groups=${gid}`, file, ...args], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } }, (err, stdout, stderr) => {
      resolve({ code: err == null ? 0 : (typeof err.code === 'number' ? err.code : 1), stdout, stderr })
    })
  })
}

t.test('the socket\'s group reaches the API through the data dir, and reads nothing else in it', { skip: process.getuid?.() === 0 && commandExists('setpriv') ? false : 'needs root and setpriv' }, async (t) => {
  const root = tempDir(t)
  // nobody must reach the checkout's bin/noodle and the data dir's parent.
  chmodSync(root, 0o755)
  const agent = await startAgent({ root, name: 'box', swarmKeyFile: writeSwarmKey(join(root, 'swarm.key')) })
  t.teardown(() => stopAgents([agent]))
  await waitFor('the agent to answer', () => statSync(agent.socketPath, { throwIfNoEntry: false }) !== undefined)

  const mode = (path: string) => statSync(path).mode & 0o777
  t.same({ dataDir: mode(agent.dataDir), store: mode(join(agent.dataDir, 'noodle.db')), identity: mode(join(agent.dataDir, 'identity.key')), socket: mode(agent.socketPath) },
    { dataDir: 0o710, store: 0o600, identity: 0o600, socket: 0o660 })

  const gid = statSync(agent.dataDir).gid
  const status = await asGroupMember(gid, BIN, ['status', '--json', '--data-dir', agent.dataDir])
  t.equal(status.code, 0, status.code === 0 ? 'noodle status exits 0' : status.stderr)
  t.match(JSON.parse(status.stdout), { name: 'box' }, 'a member of the group runs noodle status')

  const read = await asGroupMember(gid, 'head', ['-c', '1', join(agent.dataDir, 'noodle.db')])
  t.not(read.code, 0, 'but cannot read the store')
  const list = await asGroupMember(gid, 'ls', [agent.dataDir])
  t.not(list.code, 0, 'nor list the data dir')
})

import { execFile, spawn } from 'node:child_process'
import { join } from 'node:path'
import { waitFor } from './agents.ts'

export interface RunResult { code: number, stdout: string, stderr: string }

/** Runs a script or program to its end (5 minutes at most) and resolves with its exit code and output, never rejecting. */
export function run (file: string, args: string[], env: Record<string, string> = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: 300_000, env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      resolve({ code: err == null ? 0 : (typeof err.code === 'number' ? err.code : 1), stdout, stderr })
    })
  })
}

/**
 * Starts the agent an install put under the staging `root` (its bin/noodle, config and key), on loopback without
 * mDNS, killed at the test's end at the latest; resolves once its `noodle status --json` answers, with that answer
 * and a `stop` that ends it with SIGTERM and waits for its exit.
 */
export async function startInstalledAgent (t: { teardown: (fn: () => void) => void }, root: string): Promise<{ status: { name: string, version: string }, stop: () => Promise<void> }> {
  const noodle = join(root, 'opt/noodle/bin/noodle')
  const dataDir = join(root, 'var/lib/noodle')
  const agent = spawn(noodle, ['agent', '--config', join(root, 'etc/noodle/config.json'), '--data-dir', dataDir, '--swarm-key', join(root, 'etc/noodle/swarm.key'),
    '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns', '--log-level', 'warn'], { stdio: 'ignore' })
  t.teardown(() => { agent.kill('SIGKILL') })
  const status = await waitFor('noodle status to answer', async () => {
    const answer = await run(noodle, ['status', '--json', '--data-dir', dataDir])
    return answer.code === 0 && JSON.parse(answer.stdout) as { name: string, version: string }
  }, 30_000)
  const stop = async (): Promise<void> => {
    const exited = new Promise((resolve) => agent.once('exit', resolve))
    agent.kill('SIGTERM')
    await exited
  }
  return { status, stop }
}

/**
 * The `noodle` program (bin/noodle runs this file): the CLI, given the one thing it cannot do itself, running an
 * agent. The agent is imported only for `noodle agent`, so the other commands start without loading libp2p.
 */
import { main } from '../cli/cli.ts'

main(process.argv.slice(2), { runAgent: async (flags) => { await (await import('./run.ts')).runAgent(flags) } }).then((code) => {
  // The agent keeps running after main() returns; every other command is done.
  if (code >= 0) process.exitCode = code
}, (err: unknown) => {
  process.stderr.write(`noodle: ${(err as Error).stack ?? String(err)}\n`)
  process.exitCode = 1
})

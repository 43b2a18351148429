import { flushCompileCache } from 'node:module'
import { loadConfig } from '../config/config.ts'
import type { AgentFlags } from '../config/config.ts'
import { createLogger } from '../../common/logger.ts'
import { Agent } from './agent.ts'
import { faultsFromEnv } from '../../runtime/faults-env.ts'

/** `noodle agent`: load the configuration, start the agent, and stop it on SIGTERM or SIGINT. */
export async function runAgent (flags: AgentFlags): Promise<void> {
  const config = loadConfig({ flags })
  const faults = faultsFromEnv(process.env)
  // Everything the agent writes (store, models, keys) is its user's alone; the API socket alone is opened to the
  // group, explicitly (0660), and the data dir lets the group through to it (0710) without listing or reading.
  process.umask(0o077)
  const log = createLogger(config.logLevel)
  if (faults.simulate.length > 0 || faults.lostFile !== undefined) log.warn({ faults }, 'NOODLE_FAULTS: inference faults are injected')
  const agent = await Agent.create({ config, log, faults })
  await agent.start()
  log.info({ name: config.name, peerId: agent.mesh.peerId.toString(), socket: config.api.socketPath }, 'agent started')
  // Every module the agent runs is loaded now: the compile cache (bin/noodle) is written at once, not at exit, so
  // the next start is warm even after a crash (a warm cache never loads Node's TypeScript stripper, ~20 MB).
  flushCompileCache()

  let stopping = false
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now')
      process.exit(130)
    }
    stopping = true
    log.info({ signal }, 'stopping')
    // Leave the mesh politely, but never hang a shutdown: systemd and operators expect an exit within 5 s.
    setTimeout(() => {
      log.error('stop took longer than 5 s: exiting')
      process.exit(1)
    }, 5_000).unref()
    agent.stop().then(() => {
      log.info('stopped')
      process.exit(0)
    }, (err: unknown) => {
      log.error({ err }, 'stop failed')
      process.exit(1)
    })
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)
}

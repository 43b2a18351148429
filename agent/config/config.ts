import { readSmallFile } from '../../common/files.ts'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import type { z } from 'zod'
import { issueKey, mainIssue } from '../../protocols/codec.ts'
import { ConfigError } from '../../common/errors.ts'
import { LOG_LEVELS } from '../../common/logger.ts'
import type { LogLevel } from '../../common/logger.ts'
import { ConfigSchema } from './schema.ts'
import type { Config, SettingFlag } from './schema.ts'
import { envVarFor, readSettingText, settingsOf } from './settings.ts'
import type { Setting } from './settings.ts'

export { ConfigSchema, envVarFor, LOG_LEVELS }
export type { Config, LogLevel, Setting }

/**
 * Configuration comes from four layers, later ones winning: the schema's defaults, a JSON file (`--config FILE` or
 * NOODLE_CONFIG), the environment (NOODLE_*), then the flags of `noodle agent`. Every setting is declared once, in
 * schema.ts; its environment variable and flag are read off it (settings.ts). Everything is validated once, at
 * start, and an error names the key and where its value came from.
 */

/** Every setting of the config, in the schema's order. */
export const SETTINGS: readonly Setting[] = settingsOf(ConfigSchema)

/** The flag that names the config file: not a setting, the file that holds them. */
export const CONFIG_FLAG = { name: 'config', arg: 'FILE', help: 'JSON config file (also NOODLE_CONFIG)' } as const satisfies SettingFlag

/** The peer ids of bootstrap addresses (validated to end in `/p2p/<id>`). */
export function bootstrapPeerIds (bootstrap: readonly string[]): string[] {
  return bootstrap.map((address) => address.slice(address.lastIndexOf('/p2p/') + 5))
}

/** The config with the defaults that depend on the data dir filled in. */
export interface ResolvedConfig extends Config {
  swarmKeyFile: string
  api: Config['api'] & { socketPath: string }
  mqtt: Config['mqtt'] & { clientId: string, embeddedBroker: Config['mqtt']['embeddedBroker'] & { enabled: boolean, maxPacketBytes: number, maxClientsPerAddress: number } }
}

/** Where the data dir lives when nothing says otherwise: the per-user state folder. */
export function defaultDataDir (env: NodeJS.ProcessEnv = process.env): string {
  const stateHome = env.XDG_STATE_HOME ?? join(homedir(), '.local', 'state')
  return join(stateHome, 'noodle')
}

/** Flags of `noodle agent` as parseArgs gives them: `--config`, and one per setting that has a flag. */
export interface AgentFlags {
  config?: string
  [flag: string]: string | string[] | boolean | undefined
}

function isPlainObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function setPath (target: Record<string, unknown>, key: string, value: unknown): void {
  const parts = key.split('.')
  let node = target
  for (const part of parts.slice(0, -1)) {
    if (!isPlainObject(node[part])) node[part] = {}
    node = node[part] as Record<string, unknown>
  }
  node[parts.at(-1) as string] = value
}

/** Deep-merges `layer` onto `base`, noting for each leaf key which source set it. Arrays replace. */
function mergeLayer (base: Record<string, unknown>, layer: Record<string, unknown>,
  sourceOfKey: (key: string) => string, sources: Map<string, string>, prefix = ''): void {
  for (const [k, v] of Object.entries(layer)) {
    const path = prefix === '' ? k : `${prefix}.${k}`
    if (isPlainObject(v)) {
      // Merged leaf by leaf even where the base has no object yet, so each leaf records the variable or flag that
      // set it (a section such as api.tcp has no variable of its own).
      if (!isPlainObject(base[k])) base[k] = {}
      mergeLayer(base[k] as Record<string, unknown>, v, sourceOfKey, sources, path)
    } else {
      base[k] = v
      sources.set(path, sourceOfKey(path))
    }
  }
}

/** The settings the environment sets, read as their kinds; an error names the variable. */
function envLayer (env: NodeJS.ProcessEnv): Record<string, unknown> {
  const layer: Record<string, unknown> = {}
  for (const setting of SETTINGS) {
    if (setting.env === undefined) continue
    const text = env[setting.env]
    if (text !== undefined && text !== '') setPath(layer, setting.key, readSettingText(setting, text, setting.env))
  }
  return layer
}

/** The settings the flags set; a switch sets what its flag says (`--no-mdns`: mdns.enabled false). */
function flagLayer (flags: AgentFlags): Record<string, unknown> {
  const layer: Record<string, unknown> = {}
  for (const { key, flag } of SETTINGS) {
    if (flag === undefined) continue
    const value = flags[flag.name]
    if (value === undefined) continue
    if (flag.sets === undefined) setPath(layer, key, value)
    else if (value === true) setPath(layer, key, flag.sets)
  }
  return layer
}

function settingOf (key: string): Setting | undefined {
  return SETTINGS.find((s) => s.key === key)
}

export interface LoadConfigOptions {
  flags?: AgentFlags
  env?: NodeJS.ProcessEnv
}

export function loadConfig ({ flags = {}, env = process.env }: LoadConfigOptions = {}): ResolvedConfig {
  // The schema fills in the defaults; the data dir's follows the environment given here, not the process's.
  const merged: Record<string, unknown> = { dataDir: defaultDataDir(env) }
  const sources = new Map<string, string>()

  const file = flags.config ?? env.NOODLE_CONFIG
  if (file != null && file !== '') {
    mergeLayer(merged, readConfigFile(file), () => file, sources)
  }
  mergeLayer(merged, envLayer(env), (key) => settingOf(key)?.env ?? envVarFor(key), sources)
  mergeLayer(merged, flagLayer(flags), (key) => `--${settingOf(key)?.flag?.name ?? key}`, sources)

  const result = ConfigSchema.safeParse(merged)
  if (!result.success) {
    const issue = mainIssue(result.error.issues[0] as z.core.$ZodIssue)
    const key = issueKey(issue)
    const source = sourceOf(key, sources)
    const message = issue.code === 'unrecognized_keys' ? 'is not a known setting' : issue.message
    throw new ConfigError(key, `${message}${source != null ? ` (from ${source})` : ''}`)
  }
  const config = result.data
  const dataDir = resolve(config.dataDir)
  const socketPath = resolve(config.api.socketPath ?? join(dataDir, 'agent.sock'))
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH_BYTES) {
    const key = config.api.socketPath != null ? 'api.socketPath' : 'dataDir'
    throw new ConfigError(key, `makes the API socket path ${Buffer.byteLength(socketPath)} bytes long; ` +
      `Unix sockets allow ${MAX_SOCKET_PATH_BYTES}: use a shorter path or set api.socketPath`)
  }
  const brokerEnabled = config.mqtt.embeddedBroker.enabled ?? (config.mqtt.url === undefined && config.mqtt.topics.length > 0)
  const brokerHost = config.mqtt.embeddedBroker.host
  if (brokerEnabled && config.mqtt.embeddedBroker.passwordFile === undefined && !isLoopback(brokerHost)) {
    const source = sourceOf('mqtt.embeddedBroker.host', sources)
    throw new ConfigError('mqtt.embeddedBroker.host', `is ${brokerHost}, which others can reach: a broker off loopback needs ` +
      `mqtt.embeddedBroker.passwordFile (users made with mosquitto_passwd)${source != null ? ` (from ${source})` : ''}`)
  }
  // Work of a member reaped before it is orphaned would be stopped by nobody: its home is no longer listed.
  if (config.coordinator.orphanAfterMs >= config.membership.reapAfterMs) {
    const source = sourceOf('coordinator.orphanAfterMs', sources) ?? sourceOf('membership.reapAfterMs', sources)
    throw new ConfigError('coordinator.orphanAfterMs', `is ${config.coordinator.orphanAfterMs}, but must be less than membership.reapAfterMs ` +
      `(${config.membership.reapAfterMs}): a dead member's work must be stopped before the member is forgotten${source != null ? ` (from ${source})` : ''}`)
  }
  const workBytes = Buffer.byteLength(JSON.stringify(config.work))
  if (workBytes > MAX_WORK_BYTES) {
    throw new ConfigError('work', `is ${workBytes} bytes as JSON; it travels in this box's member record, so at most ${MAX_WORK_BYTES}: ` +
      'shorten the label lists (a model\'s own label metadata needs none) or the sources')
  }
  return {
    ...config,
    dataDir,
    swarmKeyFile: resolve(config.swarmKeyFile ?? join(dataDir, 'swarm.key')),
    api: { ...config.api, socketPath },
    models: { ...config.models, ...(config.models.importDir === undefined ? {} : { importDir: resolve(config.models.importDir) }) },
    mqtt: {
      ...config.mqtt,
      clientId: config.mqtt.clientId ?? `noodle-${config.name}`.slice(0, 64),
      embeddedBroker: {
        ...config.mqtt.embeddedBroker,
        enabled: brokerEnabled,
        maxPacketBytes: config.mqtt.embeddedBroker.maxPacketBytes ?? config.mqtt.maxPayloadBytes + 65_536,
        maxClientsPerAddress: config.mqtt.embeddedBroker.maxClientsPerAddress ?? (isLoopback(brokerHost) ? config.mqtt.embeddedBroker.maxClients : 16)
      }
    }
  }
}

/** Whether a listening host is reachable from this box alone. */
function isLoopback (host: string): boolean {
  return host === 'localhost' || host === '::1' || /^(::ffff:)?127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
}

/** Linux caps a Unix socket's path at 107 bytes (108 with the terminating NUL). */
export const MAX_SOCKET_PATH_BYTES = 107

/** The source of a key, or of the nearest key above or below it that a source set (for list items). */
function sourceOf (key: string, sources: Map<string, string>): string | undefined {
  let k = key
  while (k !== '') {
    const source = sources.get(k)
    if (source != null) return source
    // A setting left out of a section that something else set (api.tcp.certFile when only the port was given):
    // name what set the section.
    for (const [set, from] of sources) if (set.startsWith(`${k}.`)) return from
    const parent = k.replace(/(\.[^.[]*|\[\d+\])$/, '')
    k = parent === k ? '' : parent
  }
  return undefined
}

/** The work a member record carries (16 KiB in all, with the box's other static fields). */
const MAX_WORK_BYTES = 12 * 1024

function readConfigFile (file: string): Record<string, unknown> {
  let text: string
  try {
    text = readSmallFile(file).toString('utf8')
  } catch (err) {
    throw new ConfigError('config', `cannot read ${file}: ${(err as Error).message}`)
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new ConfigError('config', `${file} is not valid JSON: ${(err as Error).message}`)
  }
  if (!isPlainObject(parsed)) {
    throw new ConfigError('config', `${file} must hold a JSON object`)
  }
  return parsed
}

import type { ParseArgsOptionDescriptor } from 'node:util'
import { CONFIG_FLAG, SETTINGS } from './config.ts'
import type { SettingFlag } from './schema.ts'

/** A flag of `noodle agent` and how parseArgs reads it: a list's flag repeats, a switch takes no value. */
export interface AgentFlag extends SettingFlag {
  option: ParseArgsOptionDescriptor
}

/** The flags of `noodle agent`: --config, then one per setting that has a flag, in the schema's order. */
export function agentFlags (): AgentFlag[] {
  return [
    { ...CONFIG_FLAG, option: { type: 'string' } },
    ...SETTINGS.flatMap(({ flag, kind }) => flag === undefined
      ? []
      : [{ ...flag, option: flag.arg === undefined ? { type: 'boolean' as const } : { type: 'string' as const, ...(kind === 'list' ? { multiple: true } : {}) } }])
  ]
}

/** The options parseArgs takes for the flags of `noodle agent` named (all of them when none are). */
export function agentFlagOptions (...names: string[]): Record<string, ParseArgsOptionDescriptor> {
  return Object.fromEntries(agentFlags().filter((f) => names.length === 0 || names.includes(f.name)).map((f) => [f.name, f.option]))
}

/** The flags' lines in `noodle help`: `  --listen MULTIADDR   listen address, …`, the help in one column. */
export function agentFlagsHelp (): string {
  return agentFlags().map((f) => `  ${`--${f.name}${f.arg === undefined ? '' : ` ${f.arg}`}  `.padEnd(21)}${f.help}\n`).join('')
}

import type { z } from 'zod'
import { ConfigError } from '../../common/errors.ts'
import type { SettingFlag } from './schema.ts'

/**
 * The settings of a config schema, read off it: one per leaf, with its environment variable, its flag, how its
 * text is read and its default. The loader, the CLI's flags and help, and the reference are made from this list.
 */

/** How a setting's text (in the environment or a flag) is read: lists are comma-separated; objects: file only. */
export type SettingKind = 'string' | 'int' | 'number' | 'boolean' | 'list' | 'objects'

export interface Setting {
  /** The dotted path: `mqtt.retention.rawHours`. */
  key: string
  /** Unset for a list of objects, which is set in the file only. */
  env?: string
  flag?: SettingFlag
  kind: SettingKind
  description: string
  /** undefined: no default (unset, or computed by the loader: see defaultText). */
  defaultValue: unknown
  defaultText?: string
  /** The values it takes, in words, for the reference: `integer 100–60000`. */
  type: string
}

/** The rule for names: NOODLE_ and the dotted path in upper snake case (`membership.probeAfterMs` → NOODLE_MEMBERSHIP_PROBE_AFTER_MS). */
export function envVarFor (key: string): string {
  return 'NOODLE_' + key.replace(/\./g, '_').replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()
}

type AnySchema = z.core.$ZodType

interface Unwrapped { schema: AnySchema, defaultValue: unknown }

/** The type under defaults and optionals, and the default, if any. */
function unwrap (schema: AnySchema): Unwrapped {
  let node = schema
  let defaultValue: unknown
  for (;;) {
    const def = node._zod.def as z.core.$ZodTypeDef & { innerType?: AnySchema, defaultValue?: unknown }
    if (def.type === 'default' || def.type === 'prefault') {
      defaultValue ??= def.defaultValue
      node = def.innerType as AnySchema
    } else if (def.type === 'optional') {
      node = def.innerType as AnySchema
    } else {
      return { schema: node, defaultValue }
    }
  }
}

interface CheckDef { check: string, value?: unknown, inclusive?: boolean }

/** The bounds a number's checks set, as `100–60000` or `> 0, ≤ 87600`. */
function rangeText (schema: AnySchema): string {
  const checks = (schema._zod.def.checks ?? []).map((c) => c._zod.def as CheckDef)
  const low = checks.find((c) => c.check === 'greater_than')
  const high = checks.find((c) => c.check === 'less_than')
  if (low?.inclusive === true && high?.inclusive === true) return ` ${String(low.value)}–${String(high.value)}`
  const parts = [
    ...(low === undefined ? [] : [`${low.inclusive === true ? '≥' : '>'} ${String(low.value)}`]),
    ...(high === undefined ? [] : [`${high.inclusive === true ? '≤' : '<'} ${String(high.value)}`])
  ]
  return parts.length === 0 ? '' : ` ${parts.join(', ')}`
}

/** How a leaf's text is read, and its values in words. */
function kindOf (key: string, schema: AnySchema): { kind: SettingKind, type: string } {
  const def = schema._zod.def as z.core.$ZodTypeDef & { entries?: Record<string, string>, options?: AnySchema[], element?: AnySchema }
  switch (def.type) {
    case 'string':
      return { kind: 'string', type: 'string' }
    case 'enum':
      return { kind: 'string', type: Object.values(def.entries ?? {}).join(', ') }
    case 'boolean':
      return { kind: 'boolean', type: 'boolean' }
    case 'number': {
      const int = (def as { format?: string }).format === 'safeint'
      return { kind: int ? 'int' : 'number', type: `${int ? 'integer' : 'number'}${rangeText(schema)}` }
    }
    case 'union': {
      const values = (def.options ?? []).flatMap((o) => (o._zod.def as { values?: unknown[] }).values ?? [undefined])
      if (values.every((v) => Number.isInteger(v))) return { kind: 'int', type: values.join(' or ') }
      break
    }
    case 'array': {
      const element = unwrap(def.element as AnySchema).schema
      if (element._zod.def.type === 'object') return { kind: 'objects', type: 'list of objects' }
      return { kind: 'list', type: `list of ${kindOf(key, element).type}` }
    }
  }
  throw new Error(`config setting ${key}: no rule reads a ${def.type} from text`)
}

/** Every leaf of an object schema, depth first, in the schema's order. */
export function settingsOf (schema: AnySchema, prefix = ''): Setting[] {
  const { schema: object } = unwrap(schema)
  const shape = (object._zod.def as { shape?: Record<string, AnySchema> }).shape ?? {}
  return Object.entries(shape).flatMap(([name, field]) => {
    const key = prefix === '' ? name : `${prefix}.${name}`
    const { schema: inner, defaultValue } = unwrap(field)
    if (inner._zod.def.type === 'object') return settingsOf(inner, key)
    const meta = (field as z.ZodType).meta() ?? {}
    if (meta.description === undefined) throw new Error(`config setting ${key} has no description`)
    const { kind, type } = kindOf(key, inner)
    return [{
      key,
      ...(kind === 'objects' ? {} : { env: meta.env ?? envVarFor(key) }),
      ...(meta.flag === undefined ? {} : { flag: meta.flag }),
      kind,
      description: meta.description,
      defaultValue,
      ...(meta.defaultText === undefined ? {} : { defaultText: meta.defaultText }),
      type
    }]
  })
}

/** A setting's value from its text in the environment or a flag; `source` names where the text came from. */
export function readSettingText (setting: Setting, text: string, source: string): unknown {
  const { key, kind } = setting
  switch (kind) {
    case 'string':
      return text
    case 'list':
      return text.split(',').map((s) => s.trim()).filter((s) => s !== '')
    case 'int':
    case 'number':
      if (!(kind === 'int' ? /^-?\d+$/ : /^-?\d+(\.\d+)?$/).test(text.trim())) {
        throw new ConfigError(key, `must be ${kind === 'int' ? 'an integer' : 'a number'}, got ${JSON.stringify(text)} (from ${source})`)
      }
      return Number(text)
    case 'boolean':
      if (/^(1|true|yes|on)$/i.test(text)) return true
      if (/^(0|false|no|off)$/i.test(text)) return false
      throw new ConfigError(key, `must be true or false, got ${JSON.stringify(text)} (from ${source})`)
    case 'objects':
      throw new ConfigError(key, `is a list of objects, set in the config file only (not from ${source})`)
  }
}

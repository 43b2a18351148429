import { z } from 'zod'
import { NAME_PATTERN, NAME_RULE } from './name-pattern.ts'

export { NAME_PATTERN, NAME_RULE }
export const nameText = z.string().regex(NAME_PATTERN, NAME_RULE)

/** A peer id as text (base58btc, as libp2p writes it). */
export const peerIdText = z.string().regex(/^[1-9A-HJ-NP-Za-km-z]{46,60}$/, 'is not a peer id')

/** A multiaddr as text: printable ASCII without spaces (a /unix path is percent-encoded), starting with "/". */
export const multiaddrText = z.string().regex(/^\/[\x21-\x7e]{0,199}$/, 'is not a multiaddr')

// C0 and C1 controls and DEL (newlines, terminal escape sequences), and the Unicode characters that move or
// reorder text on screen (line and paragraph separators, bidirectional overrides and isolates). JSON escapes
// the C0 controls itself, not the others.
const MOVING = '\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069'
const UNSAFE = new RegExp(`[\\x00-\\x1f\\x7f-\\x9f${MOVING}]`, 'g')
const UNSAFE_IN_JSON = new RegExp(`[\\x7f-\\x9f${MOVING}]`, 'g')
const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' }

/**
 * Text from the wire (an MQTT topic, a sensor name, a camera label, a model name, an error) made safe to show on
 * one line: in a terminal, a log line, a systemd `STATUS=` (where a newline would start a command to systemd).
 * Every character that could act instead of being shown is written as an escape (`\n`, `\x1b`, `\u202e`).
 */
export function escapeText (text: string): string {
  return text.replace(UNSAFE, (c) => NAMED[c] ?? (c.charCodeAt(0) <= 0xff
    ? `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`
    : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`))
}

/**
 * A JSON text (a log line) with the characters JSON leaves raw written as `\u` escapes: the same JSON, shown
 * safely in a terminal or log viewer. Inside JSON they can only be in strings, so the values do not change.
 */
export function escapeJson (json: string): string {
  return json.replace(UNSAFE_IN_JSON, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

/** `scheme://user:pass@host` → `scheme://***@host`, wherever it occurs in a text (a URL, an FFmpeg error). */
export function redactCredentials (text: string): string {
  return text.replace(/([A-Za-z][A-Za-z0-9+.-]*:\/\/)[^@/\s]*@/g, '$1***@')
}

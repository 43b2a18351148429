import { pino } from 'pino'
import type { Logger, DestinationStream } from 'pino'

export type { Logger }

import type { LogLevel } from './config.ts'

// What JSON leaves as it is but a terminal or a log viewer would act on: DEL, the C1 controls (0x9b is an 8-bit
// CSI), line separators and bidirectional overrides. JSON escapes C0 controls (newlines, ESC) itself.
const UNSAFE_IN_JSON = /[\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g

/**
 * A JSON log line with those characters written as `\u` escapes: the same JSON, and in a string they can only be
 * values (names, topics, errors from the wire), so a line shown in a terminal shows them instead of acting.
 */
export function escapeLogLine (line: string): string {
  return line.replace(UNSAFE_IN_JSON, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

/**
 * JSON lines on stdout (journald keeps them as they are), written synchronously so the last lines before a
 * crash are not lost (an agent logs little). Key material never reaches a log line: the paths
 * below are censored even if a caller logs a whole config or identity object by mistake. Text from the wire
 * is escaped (`escapeLogLine`).
 */
export function createLogger (level: LogLevel, destination?: DestinationStream): Logger {
  const out = destination ?? pino.destination({ dest: 1, sync: true })
  return pino({
    level,
    base: { pid: process.pid },
    redact: {
      paths: ['privateKey', '*.privateKey', 'swarmKey', '*.swarmKey', 'psk', '*.psk'],
      censor: '[redacted]'
    }
  }, { write: (line: string) => out.write(escapeLogLine(line)) })
}

import { pino } from 'pino'
import type { Logger, DestinationStream } from 'pino'

export type { Logger }

import { escapeJson } from './text.ts'

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = typeof LOG_LEVELS[number]

/**
 * JSON lines on stdout (journald keeps them as they are), written synchronously so the last lines before a
 * crash are not lost (an agent logs little). Key material never reaches a log line: the paths
 * below are censored even if a caller logs a whole config or identity object by mistake. Text from the wire
 * is escaped (`escapeJson`: JSON escapes newlines and ESC, not the C1 controls or bidi overrides).
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
  }, { write: (line: string) => out.write(escapeJson(line)) })
}

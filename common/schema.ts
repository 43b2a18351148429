/**
 * One step of a subsystem's tables. `version` is the store's schema version the step belongs to: one number
 * line shared by every subsystem, so a database of any earlier version migrates in the order the steps were
 * shipped. Steps of several subsystems may share a version (they run in one transaction). Never edit a shipped
 * step: add one, numbered above every step of every subsystem.
 */
export interface Migration {
  version: number
  sql: string
}

/**
 * How long the store keeps the rows of a table that grows: rows younger than `maxAgeMs` by `time` (through an
 * index on it, so a row timed far ahead stalls nothing behind it), and at most `maxRows`, the newest by `key`
 * (insertion order, which no sender sets).
 */
export interface RetentionRule {
  table: string
  time: string
  key: string
  maxAgeMs: number
  maxRows: number
}

/** A subsystem's tables, as it hands them to the store: its migrations in order and the retention of those that grow. */
export interface TableSet {
  name: string
  migrations: readonly Migration[]
  retention?: readonly RetentionRule[]
}

export const DAY_MS = 86_400_000

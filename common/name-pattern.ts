/**
 * Names that travel between boxes and end up in tables, logs, file names and systemd's status: config names,
 * member names, work ids, decision ids. Restricting them where they enter is simpler than escaping them later.
 * Here without zod, for the threads that need the rule and nothing else (runtime/faults.ts in inference workers).
 */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/
export const NAME_RULE = 'must be 1–63 letters, digits, ".", "_" or "-", starting with a letter or digit'

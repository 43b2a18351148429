import { closeSync, constants, fstatSync, openSync, realpathSync, statSync } from 'node:fs'
import type { Stats } from 'node:fs'
import { isAbsolute, resolve, sep } from 'node:path'
import { NoodleError } from './errors.ts'

/** A model file the caller may not compile, or that is not one: the answer's status, and the field at fault. */
export class ModelImportError extends NoodleError {
  readonly httpStatus: number
  readonly field = 'file'

  constructor (httpStatus: number, code: string, message: string) {
    super(code, `file: ${message}`)
    this.httpStatus = httpStatus
  }
}

/** Who asks to compile, and what this box allows them. */
export interface ImportRules {
  /** Over HTTPS (an operator elsewhere), as opposed to the trusted local socket. */
  remote: boolean
  /** `models.importDir`: the only folder remote callers may compile from; unset, they may not compile. */
  importDir: string | undefined
  /** `models.maxModelBytes`. */
  maxBytes: number
}

/** What a path that is not a regular file is (links are resolved before: none is left). */
function describe (stats: Stats): string {
  if (stats.isDirectory()) return 'a folder'
  if (stats.isFIFO()) return 'a FIFO'
  if (stats.isSocket()) return 'a socket'
  return 'a device'
}

function checkFile (stats: Stats, file: string, maxBytes: number): void {
  if (!stats.isFile()) throw new ModelImportError(400, 'ERR_NOT_A_FILE', `${file} is ${describe(stats)}, not a regular file`)
  if (stats.size > maxBytes) throw new ModelImportError(413, 'ERR_MODEL_TOO_LARGE', `${file} is ${stats.size} bytes; models.maxModelBytes allows ${maxBytes}`)
}

/**
 * The real path of a model file a caller may compile: a regular file (never a device, FIFO or folder, which
 * would block or never end), no bigger than the cap, and for remote callers inside `models.importDir` after
 * every link and `..` is resolved. The file is opened (without blocking, without following a link swapped in)
 * and checked again, so what was judged is what is there.
 */
export function importableModelFile (file: string, rules: ImportRules): string {
  if (rules.remote && rules.importDir === undefined) {
    throw new ModelImportError(403, 'ERR_IMPORT_FORBIDDEN', 'compiling over HTTPS is off: set models.importDir to the folder remote operators may compile from')
  }
  const wanted = rules.remote && !isAbsolute(file) ? resolve(rules.importDir as string, file) : resolve(file)
  let real: string
  try {
    real = realpathSync(wanted)
  } catch (err) {
    throw new ModelImportError(400, 'ERR_MODEL_UNREADABLE', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  if (rules.remote) {
    let dir = rules.importDir as string
    try { dir = realpathSync(dir) } catch { /* a folder that is not there holds nothing: the check below fails */ }
    if (!real.startsWith(dir.endsWith(sep) ? dir : dir + sep)) {
      throw new ModelImportError(403, 'ERR_IMPORT_FORBIDDEN', `${file} is outside models.importDir (${dir})`)
    }
  }
  // Judged before it is opened: opening some devices does something.
  checkFile(statSync(real), file, rules.maxBytes)
  let fd: number
  try {
    fd = openSync(real, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW)
  } catch (err) {
    throw new ModelImportError(400, 'ERR_MODEL_UNREADABLE', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  try {
    checkFile(fstatSync(fd), file, rules.maxBytes)
  } finally {
    closeSync(fd)
  }
  return real
}

import { randomUUID } from 'node:crypto'
import { constants, mkdirSync, realpathSync, rmSync, statSync } from 'node:fs'
import type { Stats } from 'node:fs'
import { open } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { isAbsolute, join, resolve, sep } from 'node:path'
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

/** How much of a model file is copied at a time. */
const CHUNK_BYTES = 1024 * 1024

function unreadable (file: string, err: unknown): ModelImportError {
  return new ModelImportError(400, 'ERR_MODEL_UNREADABLE', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
}

/**
 * The real path of a model file a caller may compile, judged by its name: a regular file (never a device, FIFO
 * or folder, which would block or never end) no bigger than the cap, and for remote callers inside
 * `models.importDir` once every link and `..` is resolved.
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
    throw unreadable(file, err)
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
  return real
}

/** The staging folder of a data dir: private copies of models being compiled. */
export function importStagingDir (dataDir: string): string {
  return join(dataDir, 'import')
}

/** Deletes copies left behind by an agent that died in the middle of a compile: nothing else deletes them. */
export function clearImportStaging (dataDir: string): void {
  rmSync(importStagingDir(dataDir), { recursive: true, force: true })
}

/**
 * Runs `use` on a private copy of a model file the caller may compile (see importableModelFile). The copy is read
 * through the descriptor that was checked (opened without blocking and without following a link swapped in),
 * never past the cap, into `stagingDir` (the agent's own): a file replaced, or grown, after it was judged is
 * refused, not read. The copy is deleted afterwards.
 */
export async function withImportedModel<T> (file: string, rules: ImportRules, stagingDir: string, use: (path: string) => Promise<T>): Promise<T> {
  const real = importableModelFile(file, rules)
  mkdirSync(stagingDir, { recursive: true, mode: 0o700 })
  const staged = join(stagingDir, `${randomUUID()}.onnx`)
  try {
    await copyChecked(real, file, rules.maxBytes, staged)
    return await use(staged)
  } finally {
    rmSync(staged, { force: true })
  }
}

async function copyChecked (real: string, file: string, maxBytes: number, staged: string): Promise<void> {
  let source: FileHandle
  try {
    source = await open(real, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW)
  } catch (err) {
    throw unreadable(file, err)
  }
  try {
    checkFile(await source.stat(), file, maxBytes)
    const target = await open(staged, 'wx', 0o600)
    try {
      const chunk = Buffer.allocUnsafe(CHUNK_BYTES)
      let total = 0
      for (;;) {
        const { bytesRead } = await source.read(chunk, 0, CHUNK_BYTES, null)
        if (bytesRead === 0) break
        total += bytesRead
        if (total > maxBytes) throw new ModelImportError(413, 'ERR_MODEL_TOO_LARGE', `${file} holds more than models.maxModelBytes (${maxBytes}) bytes: it grew, or its size was wrong`)
        await target.write(chunk, 0, bytesRead)
      }
    } finally {
      await target.close()
    }
  } finally {
    await source.close()
  }
}

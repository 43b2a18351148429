import { randomUUID } from 'node:crypto'
import { constants, mkdirSync, readlinkSync, realpathSync, rmSync, statSync } from 'node:fs'
import type { Stats } from 'node:fs'
import { open } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { isAbsolute, join, resolve, sep } from 'node:path'
import { NoodleError } from '../../common/errors.ts'

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
 * Over HTTPS, one answer for a path outside models.importDir, one that is not there, and one that cannot be read:
 * a remote caller cannot probe which paths exist on the box.
 */
function notInImportDir (file: string): ModelImportError {
  return new ModelImportError(403, 'ERR_IMPORT_FORBIDDEN', `${file} is not a file in models.importDir`)
}

/** What a remote caller is told when a path cannot be read: the same as outside (see notInImportDir). */
function unreadableFor (file: string, rules: ImportRules, err: unknown): ModelImportError {
  return rules.remote ? notInImportDir(file) : unreadable(file, err)
}

function isInside (path: string, dir: string): boolean {
  return path.startsWith(dir.endsWith(sep) ? dir : dir + sep)
}

/** models.importDir with its links resolved (as given when it is not there: nothing is inside it then). */
function realImportDir (rules: ImportRules): string {
  const dir = rules.importDir as string
  try { return realpathSync(dir) } catch { return dir }
}

/** A model file that was judged: its real path, and what it was then (to know it again once opened). */
export interface CheckedFile { real: string, stats: Stats }

/**
 * The real path of a model file a caller may compile, judged by its name: a regular file (never a device, FIFO
 * or folder, which would block or never end) no bigger than the cap, and for remote callers inside
 * `models.importDir` once every link and `..` is resolved.
 */
export function importableModelFile (file: string, rules: ImportRules): CheckedFile {
  if (rules.remote && rules.importDir === undefined) {
    throw new ModelImportError(403, 'ERR_IMPORT_FORBIDDEN', 'compiling over HTTPS is off: set models.importDir to the folder remote operators may compile from')
  }
  const wanted = rules.remote && !isAbsolute(file) ? resolve(rules.importDir as string, file) : resolve(file)
  // By name first: a path outside is refused before anything is looked up, so whether it exists is not told.
  if (rules.remote && !isInside(wanted, resolve(rules.importDir as string))) throw notInImportDir(file)
  let real: string
  let stats: Stats
  try {
    real = realpathSync(wanted)
    if (rules.remote && !isInside(real, realImportDir(rules))) throw notInImportDir(file)
    // Judged before it is opened: opening some devices does something.
    stats = statSync(real)
  } catch (err) {
    // Gone between the two looks (a race), as well as never there: a refusal, never a 500 naming the path.
    throw err instanceof ModelImportError ? err : unreadableFor(file, rules, err)
  }
  checkFile(stats, file, rules.maxBytes)
  return { real, stats }
}

/** Whether an open file is inside models.importDir, by the path the kernel has for its descriptor (Linux). */
function openedInside (handle: FileHandle, rules: ImportRules): boolean {
  try {
    return isInside(readlinkSync(`/proc/self/fd/${handle.fd}`), realImportDir(rules))
  } catch {
    return false // no procfs: where it is cannot be told, so it is not taken
  }
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
  const checked = importableModelFile(file, rules)
  mkdirSync(stagingDir, { recursive: true, mode: 0o700 })
  const staged = join(stagingDir, `${randomUUID()}.onnx`)
  try {
    await copyChecked(checked, file, rules, staged)
    return await use(staged)
  } finally {
    rmSync(staged, { force: true })
  }
}

/**
 * Copies the file `checked` judged to `staged`. O_NOFOLLOW guards only the last part of the path: a folder on it
 * swapped for a link after the check would be followed. So what was opened must be what was judged (same device
 * and inode) and, over HTTPS, still inside models.importDir where the kernel says it is; else it is refused.
 */
export async function copyChecked (checked: CheckedFile, file: string, rules: ImportRules, staged: string): Promise<void> {
  const { maxBytes } = rules
  let source: FileHandle
  try {
    source = await open(checked.real, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW)
  } catch (err) {
    throw unreadableFor(file, rules, err)
  }
  try {
    const opened = await source.stat()
    if (opened.dev !== checked.stats.dev || opened.ino !== checked.stats.ino || (rules.remote && !openedInside(source, rules))) {
      throw new ModelImportError(409, 'ERR_MODEL_CHANGED', `${file} was replaced while it was opened: try again`)
    }
    checkFile(opened, file, maxBytes)
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

import { randomBytes } from 'node:crypto'
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs'
import { open, rename } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'

/**
 * Files that must be whole or absent after a power cut (model copies): written under a temporary name, flushed to
 * the disk, renamed into place, and the rename itself flushed (the folder's entry). A crash leaves at worst a
 * `*.tmp` file, which `isTemporary` names so a start can delete it.
 */
export function temporaryPath (file: string): string {
  return join(dirname(file), `.${basename(file)}.${randomBytes(4).toString('hex')}.tmp`)
}

export function isTemporary (name: string): boolean {
  return /^\..+\.[0-9a-f]{8}\.tmp$/.test(name)
}

export function writeFileDurably (file: string, bytes: Uint8Array, mode = 0o640): void {
  const tmp = temporaryPath(file)
  try {
    const fd = openSync(tmp, 'w', mode)
    try {
      for (let at = 0; at < bytes.length;) at += writeSync(fd, bytes, at)
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    renameSync(tmp, file)
  } catch (err) {
    rmSync(tmp, { force: true })
    throw err
  }
  syncDir(dirname(file))
}

/** Flushes a file written by someone else (onnxruntime), then moves it into place durably. */
export async function moveDurably (from: string, to: string): Promise<void> {
  const handle = await open(from, 'r+')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
  await rename(from, to)
  syncDir(dirname(to))
}

export function syncDir (dir: string): void {
  const fd = openSync(dir, 'r')
  try {
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

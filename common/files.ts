import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs'

/** What a file an operator names (a config, a key, a certificate, a list) may hold at most, unless said otherwise. */
export const MAX_SETTINGS_FILE_BYTES = 1024 * 1024

/**
 * A regular file of at most `max` bytes, read whole. What is not a regular file is refused before a byte is read
 * (a FIFO would block the read for ever; `/dev/zero` never ends), and never more than `max` + 1 bytes are read.
 * Errors from opening it (ENOENT, EACCES) pass through as they are.
 */
export function readSmallFile (path: string, max = MAX_SETTINGS_FILE_BYTES): Buffer {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK)
  try {
    if (!fstatSync(fd).isFile()) throw new Error('it is not a regular file')
    const buffer = Buffer.alloc(max + 1)
    let length = 0
    // A read may return less than asked: read until the end, or one byte past the cap.
    for (let n = -1; n !== 0 && length <= max; length += n) n = readSync(fd, buffer, length, max + 1 - length, length)
    if (length > max) throw new Error(`it is over ${max} bytes`)
    return buffer.subarray(0, length)
  } finally {
    closeSync(fd)
  }
}

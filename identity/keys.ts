import { randomBytes } from 'node:crypto'
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { readSmallFile } from '../common/files.ts'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey, PeerId } from '@libp2p/interface'
import { IdentityError } from '../common/errors.ts'

/** The file inside the data dir that holds this node's Ed25519 key (libp2p protobuf encoding). */
export const IDENTITY_FILE = 'identity.key'

export interface Identity {
  privateKey: PrivateKey
  peerId: PeerId
}

/**
 * Creates the data dir, or sets the mode of one that exists, to 0710: the owner's, and its group may pass through
 * to the API socket (0660) by name, but neither list nor read anything in it (the agent's files are 0600).
 */
export function ensureDataDir (dataDir: string): void {
  mkdirSync(dataDir, { recursive: true, mode: DATA_DIR_MODE })
  chmodSync(dataDir, DATA_DIR_MODE)
}
export const DATA_DIR_MODE = 0o710

function isMissing (err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT'
}

/** Loads the node's identity, creating it on first use so that the peer id survives restarts. */
export async function loadOrCreateIdentity (dataDir: string): Promise<Identity & { created: boolean }> {
  const file = join(dataDir, IDENTITY_FILE)
  let bytes: Buffer
  try {
    bytes = readFileSync(file)
  } catch (err) {
    if (!isMissing(err)) throw new IdentityError(`cannot read ${file}: ${(err as Error).message}`, { cause: err })
    const privateKey = await generateKeyPair('Ed25519')
    // 'wx' never overwrites: two processes racing on first start cannot swap identities under each other.
    writeFileSync(file, privateKeyToProtobuf(privateKey), { mode: 0o600, flag: 'wx' })
    return { privateKey, peerId: peerIdFromPrivateKey(privateKey), created: true }
  }
  let privateKey: PrivateKey
  try {
    privateKey = privateKeyFromProtobuf(bytes)
  } catch (err) {
    throw new IdentityError(`${file} does not hold a libp2p private key: ${(err as Error).message}`, { cause: err })
  }
  return { privateKey, peerId: peerIdFromPrivateKey(privateKey), created: false }
}

const SWARM_KEY_HEADER = '/key/swarm/psk/1.0.0/\n/base16/\n'

/** A new pre-shared key in the format IPFS and @libp2p/pnet use. */
export function generateSwarmKey (): string {
  return SWARM_KEY_HEADER + randomBytes(32).toString('hex') + '\n'
}

/** A swarm key file is three short lines. */
const MAX_SWARM_KEY_FILE_BYTES = 4 * 1024

/** Reads and checks a swarm key; returns it in the byte form `@libp2p/pnet` takes. */
export function readSwarmKey (file: string): Uint8Array {
  let text: string
  try {
    text = readSmallFile(file, MAX_SWARM_KEY_FILE_BYTES).toString('utf8')
  } catch (err) {
    const hint = isMissing(err) ? ' (run `noodle init`, or copy swarm.key from a box already in the mesh)' : ''
    throw new IdentityError(`cannot read swarm key ${file}: ${(err as Error).message}${hint}`, { cause: err })
  }
  const lines = text.trim().split(/\r?\n/)
  if (lines.length !== 3 || lines[0] !== '/key/swarm/psk/1.0.0/' || lines[1] !== '/base16/' ||
    !/^[0-9a-fA-F]{64}$/.test(lines[2] ?? '')) {
    throw new IdentityError(`${file} is not a swarm key: expected "/key/swarm/psk/1.0.0/", "/base16/" and 64 hex digits`)
  }
  return new TextEncoder().encode(`${SWARM_KEY_HEADER}${(lines[2] as string).toLowerCase()}`)
}

/** Writes a new swarm key unless one exists; returns whether it wrote one. */
export function ensureSwarmKey (file: string): boolean {
  try {
    writeFileSync(file, generateSwarmKey(), { mode: 0o600, flag: 'wx' })
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw new IdentityError(`cannot write swarm key ${file}: ${(err as Error).message}`, { cause: err })
  }
}

import type { Socket } from 'node:net'

/**
 * Open connections counted by remote address, so that one address (one client, or a flood from one host) cannot
 * take every connection a listener has: the HTTPS API's and the embedded MQTT broker's.
 */
export class AddressLimit {
  private readonly max: number
  private readonly open = new Map<string, number>()

  constructor (max: number) {
    this.max = max
  }

  /** Counts `socket` against its address until it closes, and returns true; false (nothing counted) when the address has its share. */
  admit (socket: Socket): boolean {
    const address = socket.remoteAddress ?? ''
    const open = this.open.get(address) ?? 0
    if (open >= this.max) return false
    this.open.set(address, open + 1)
    socket.once('close', () => {
      const left = (this.open.get(address) ?? 1) - 1
      if (left === 0) this.open.delete(address)
      else this.open.set(address, left)
    })
    return true
  }
}

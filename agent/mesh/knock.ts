import { createConnection } from 'node:net'

/**
 * Bare TCP knocks on a peer's libp2p port, and what a dial error says: what the prober uses to tell a gone agent
 * from a starved one, and the dialer to find a healed link without waiting out a whole dial.
 */

export type KnockResult = 'connected' | 'refused' | 'failed'

/** The host and port of each TCP multiaddr, e.g. /ip4/10.0.0.5/tcp/4001 → 10.0.0.5:4001. */
export function tcpTargets (addrs: readonly string[]): Array<{ host: string, port: number }> {
  return addrs.flatMap((a) => {
    const m = /^\/(ip4|ip6|dns|dns4|dns6)\/([^/]+)\/tcp\/(\d+)/.exec(a)
    return m == null ? [] : [{ host: m[2] as string, port: Number(m[3]) }]
  })
}

/**
 * Opens and at once closes a TCP connection: the member's kernel accepts it on the agent's listening socket
 * even while the agent itself is starved of CPU, and refuses it once the process is gone.
 */
export function knock (targets: ReadonlyArray<{ host: string, port: number }>, timeoutMs: number): Promise<KnockResult> {
  const one = ({ host, port }: { host: string, port: number }) => new Promise<KnockResult>((resolve) => {
    const socket = createConnection({ host, port, timeout: timeoutMs })
    const done = (result: KnockResult) => { socket.destroy(); resolve(result) }
    socket.once('connect', () => { done('connected') })
    socket.once('timeout', () => { done('failed') })
    socket.once('error', (err: NodeJS.ErrnoException) => { done(err.code === 'ECONNREFUSED' ? 'refused' : 'failed') })
  })
  if (targets.length === 0) return Promise.resolve('failed')
  return Promise.all(targets.slice(0, 4).map(one)).then((results) =>
    results.includes('connected') ? 'connected' : results.every((r) => r === 'refused') ? 'refused' : 'failed')
}

/** Whether a dial error says nothing listens at the peer's addresses (its process is gone). */
export function isRefused (err: unknown): boolean {
  if (err instanceof AggregateError) return err.errors.length > 0 && err.errors.every(isRefused)
  const e = err as { code?: string, cause?: unknown } | null
  return e?.code === 'ECONNREFUSED' || (e?.cause != null && isRefused(e.cause))
}

export type Knock = typeof knock

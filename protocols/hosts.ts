import { BlockList, isIP } from 'node:net'

/**
 * Addresses that reach the box itself or its own link: loopback, "this network" (0.0.0.0 connects to the box on
 * Linux) and link-local (where clouds serve instance metadata, 169.254.169.254). IPv4-mapped IPv6 forms match the
 * IPv4 rules.
 */
const LOCAL = new BlockList()
LOCAL.addSubnet('127.0.0.0', 8, 'ipv4')
LOCAL.addSubnet('0.0.0.0', 8, 'ipv4')
LOCAL.addSubnet('169.254.0.0', 16, 'ipv4')
LOCAL.addAddress('::1', 'ipv6')
LOCAL.addAddress('::', 'ipv6')
LOCAL.addSubnet('fe80::', 10, 'ipv6')

/**
 * A URL's host as a resolver reads it, so that two spellings of one address compare equal: lower case, without
 * brackets or a final dot, and an IPv4 address in any of the forms inet_aton takes (`2130706433`, `0x7f.1`,
 * `127.1`) as a dotted quad. (`new URL` does that only for http(s); an rtsp:// host is left as written.)
 */
export function canonicalHost (host: string): string {
  let h = host.toLowerCase()
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1)
  if (h.endsWith('.')) h = h.slice(0, -1)
  if (h.includes('%')) {
    try {
      h = decodeURIComponent(h)
    } catch {
      // Not percent-encoding: left as written.
    }
  }
  if (isIP(h) === 6) return new URL(`http://[${h}]/`).hostname.slice(1, -1)
  if (isIP(h) === 0 && /^[0-9a-fx.]+$/.test(h)) {
    try {
      const parsed = new URL(`http://${h}/`).hostname
      if (isIP(parsed) === 4) return parsed
    } catch {
      // Not an address in any form: a name.
    }
  }
  return h
}

/** Whether `host` is this box or its link by its spelling (a DNS name that resolves to loopback is not seen). */
export function isLocalHost (host: string): boolean {
  const h = canonicalHost(host)
  if (h === 'localhost' || h.endsWith('.localhost')) return true
  const family = isIP(h)
  return family !== 0 && LOCAL.check(h, family === 4 ? 'ipv4' : 'ipv6')
}

/** Ports the network schemes use when a URL names none. */
const DEFAULT_PORTS: Readonly<Record<string, number>> = { rtsp: 554, rtsps: 322, http: 80, https: 443, rtmp: 1935, rtmps: 443 }

/** The port a URL connects to: its own, or its scheme's default (undefined where there is none). */
export function portOf (url: URL): number | undefined {
  return url.port !== '' ? Number(url.port) : DEFAULT_PORTS[url.protocol.slice(0, -1)]
}

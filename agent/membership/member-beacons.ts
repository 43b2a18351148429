import { BoundedMap } from '../../common/bounded-map.ts'
import { beaconOf } from '../../protocols/health.ts'
import type { HealthBeacon, HealthRecord, HealthWire } from '../../protocols/health.ts'

/** A member's record is asked for again after this long without it (the asked member answers once a second at most). */
export const ASK_RETRY_MS = 1_000

/**
 * Rebuilds members' whole beacons from what v2 sends: every pulse, and each member's record, kept from the last
 * message that carried it. A pulse that names a record we do not have still speaks for the member with the
 * record we have (its liveness, role, term and figures are in the pulse), and we ask for the new one. Records
 * are kept only for members in the table (the caller says which), at most `maxMembers` of them.
 */
export class MemberBeacons {
  private readonly records: BoundedMap<string, { rev: number, record: HealthRecord }>
  /** When we last asked each member for its record. */
  private readonly asked: BoundedMap<string, number>

  constructor (components: { maxMembers: number }) {
    this.records = new BoundedMap(components.maxMembers, { refresh: true })
    this.asked = new BoundedMap(components.maxMembers, { refresh: true })
  }

  /** The member's beacon from this message: with the record it carries, else the member's kept one; null if none. */
  assemble (peerId: string, wire: HealthWire): HealthBeacon | null {
    const record = wire.record ?? this.records.get(peerId)?.record
    return record === undefined ? null : beaconOf(wire, record)
  }

  /** Whether to ask the sender for its record now: it names one we lack, and we did not ask within `ASK_RETRY_MS`. */
  shouldAsk (peerId: string, wire: HealthWire, now: number): boolean {
    if (wire.record !== undefined || this.records.get(peerId)?.rev === wire.rev) return false
    const last = this.asked.get(peerId)
    if (last !== undefined && now - last < ASK_RETRY_MS) return false
    this.asked.set(peerId, now)
    return true
  }

  /** Keeps the record a member's message carried (call it once the member is in the table). */
  keep (peerId: string, wire: HealthWire): void {
    if (wire.record === undefined) return
    this.records.set(peerId, { rev: wire.rev, record: wire.record })
    this.asked.delete(peerId)
  }

  forget (peerId: string): void {
    this.records.delete(peerId)
    this.asked.delete(peerId)
  }

  /** Members whose record is kept, for tests. */
  get size (): number {
    return this.records.size
  }
}

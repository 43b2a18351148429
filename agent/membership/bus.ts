import { EventEmitter } from 'node:events'
import type { HealthBeacon } from '../../protocols/health.ts'

/**
 * What the parts of the beacon flow tell each other (health beacon → membership → election → orchestrator): the
 * one who sees something emits it, whoever cares listens from its start() to its stop(). Nobody holds a callback
 * into another part, so the parts can be built in any order and tested alone.
 */
export interface MemberBusEvents {
  /** Others should hear from us soon (the coordinator changed, our work or models changed): beacon early. */
  news: []
  /**
   * A member joined (`first`: never in our table), restarted, or came back from dead or left: it may know nothing
   * of us, so beacon early, with our record. (Its subscription, which also brings our record, can come before
   * gossipsub's own stream to it is open, and gossipsub drops what it cannot send yet; its beacon reaching us
   * shows that stream is open.)
   */
  'member-met': [peerId: string, first: boolean]
  /** A member's newest valid beacon, after the membership table took it. */
  beacon: [peerId: string, beacon: HealthBeacon]
  /** This node's own beacon, as it is sent: the table shows self with the same figures. */
  'own-beacon': [beacon: HealthBeacon]
  /** `peerId` says, signed, that it coordinates `term` (seen on `topic`: a decision; beacons come as `beacon`). */
  claim: [peerId: string, term: number, topic: string]
  /**
   * Probe this member now: every connection to it closed (a dead process refuses at once), a member found it dead,
   * or one we list dead connected again (an answered ping brings it back before its next beacon).
   */
  'probe-now': [peerId: string]
  /** A member's pulse named a record we do not have: our next beacon asks it for the record. */
  'record-wanted': [peerId: string]
  /** A member asked for our record: our next beacon carries it (at most once a second, however often asked). */
  'record-asked': [peerId: string]
}

/** The agent's one bus for the beacon flow: built by the composition root and handed to each part that uses it. */
export class MemberBus extends EventEmitter<MemberBusEvents> {}

import type { Logger } from '../common/logger.ts'
import { MAX_SHARED_DETECTIONS } from '../protocols/media.ts'
import type { CameraResultMessage } from '../protocols/media.ts'
import type { CameraResult } from './camera.ts'

/** While what a camera sees stays the same, its results are shared at most this often. */
export const SHARE_INTERVAL_MS = 1_000

/**
 * Which camera results leave this node, and where: to the mesh and to MQTT
 * (`<baseTopic>/<node>/cameras/<camera>/detections`), at most once a SHARE_INTERVAL_MS per camera, and at once
 * when the number of detections changes (something came or went). Time is the result's own (when its frame was
 * decoded), so a burst of late results is throttled as the frames were taken. A message carries the first
 * MAX_SHARED_DETECTIONS detections (the wire's cap); the store keeps them all.
 */
export class ResultSharing {
  private readonly toMesh: (message: CameraResultMessage) => Promise<void>
  private readonly toMqtt: (topic: string, payload: string) => void
  private readonly baseTopic: string
  private readonly node: string
  private readonly log: Logger
  /** Per camera, the last result shared: its time and how many detections it had. */
  private readonly lastShared = new Map<string, { at: number, count: number }>()

  constructor (components: {
    /** Publishes on the mesh (gossip); a failure is logged, never thrown. */
    toMesh: (message: CameraResultMessage) => Promise<void>
    /** Publishes to the MQTT broker, where this node has one. */
    toMqtt: (topic: string, payload: string) => void
    /** mqtt.baseTopic, and this node's name. */
    baseTopic: string
    node: string
    log: Logger
  }) {
    this.toMesh = components.toMesh
    this.toMqtt = components.toMqtt
    this.baseTopic = components.baseTopic
    this.node = components.node
    this.log = components.log
  }

  /** The MQTT topic a camera's results go to. */
  topic (camera: string): string {
    return `${this.baseTopic}/${this.node}/cameras/${camera}/detections`
  }

  /** Shares a result unless the camera's last shared one is recent and saw as many things; says whether it did. */
  share (result: CameraResult): boolean {
    const last = this.lastShared.get(result.camera)
    const count = result.detections.length
    if (last !== undefined && result.at - last.at < SHARE_INTERVAL_MS && last.count === count) return false
    this.lastShared.set(result.camera, { at: result.at, count })
    const message: CameraResultMessage = {
      v: 2,
      camera: result.camera,
      at: result.at,
      latencyMs: result.latencyMs,
      detections: result.detections.slice(0, MAX_SHARED_DETECTIONS)
    }
    this.toMesh(message).catch((err: unknown) => { this.log.debug({ err }, 'camera result not published') })
    this.toMqtt(this.topic(result.camera), JSON.stringify(message))
    return true
  }
}

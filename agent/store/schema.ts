import type { TableSet } from '../../common/schema.ts'
import { OPERATOR_TABLES } from '../../identity/operators.ts'
import { CAMERA_EVENT_TABLES } from '../../media/camera-events.ts'
import { DETECTION_TABLES } from '../../media/detection-tables.ts'
import { MODEL_TABLES } from '../../runtime/registry.ts'
import { COORDINATION_TABLES } from '../coordination/coordination-records.ts'
import { SENSOR_TABLES } from '../ingest/sensor-store.ts'
import { MEMBER_TABLES } from '../membership/member-records.ts'
import { EVENT_TABLES } from './event-log.ts'
import { HEALTH_TABLES } from './health-history.ts'

/**
 * Every subsystem's tables in noodle.db, in the order the store runs their steps of one version (and prunes them).
 * A subsystem with new tables adds its set here; a new step takes the next version above every step listed.
 * Versions so far: 1 members and events, 2 coordination, 3 sensors, 4 models, 5 detections, 6 model threads,
 * 7 operators, 8 sensor indexes, 9 model origins and file stamps, retention indexes, 10 detection boxes in frame pixels, 11 camera events,
 * 12 health history.
 */
export const SCHEMA: readonly TableSet[] = [
  MEMBER_TABLES,
  EVENT_TABLES,
  COORDINATION_TABLES,
  SENSOR_TABLES,
  MODEL_TABLES,
  DETECTION_TABLES,
  OPERATOR_TABLES,
  CAMERA_EVENT_TABLES,
  HEALTH_TABLES
]

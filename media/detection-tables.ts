import type { TableSet } from '../common/schema.ts'
import { DAY_MS } from '../common/schema.ts'

/** What the cameras' models found (results only, never frames), kept a week. */
export const DETECTION_TABLES: TableSet = {
  name: 'detections',
  migrations: [
    {
      version: 5,
      sql: `
      CREATE TABLE detections (
        id     INTEGER PRIMARY KEY,
        camera TEXT NOT NULL,
        at     INTEGER NOT NULL,             -- when the frame was decoded (ms since the epoch)
        label  TEXT NOT NULL,
        score  REAL NOT NULL,
        x      INTEGER NOT NULL,             -- box in the model's input pixels
        y      INTEGER NOT NULL,
        width  INTEGER NOT NULL,
        height INTEGER NOT NULL
      );
      CREATE INDEX detections_camera_at ON detections (camera, at);
    `
    },
    {
      version: 9,
      sql: `
      -- Retention prunes the table by time through this index.
      CREATE INDEX detections_at ON detections (at);
    `
    }
  ],
  retention: [{ table: 'detections', time: 'at', key: 'id', maxAgeMs: 7 * DAY_MS, maxRows: 1_000_000 }]
}

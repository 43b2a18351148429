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
    },
    {
      version: 10,
      sql: `
      -- One box format everywhere: corners in the source frame's pixels. The rows before held boxes in the
      -- model's input pixels, which cannot be mapped back without their frame's size; the table keeps a week of
      -- results, so they are dropped rather than mixed with the new ones.
      DELETE FROM detections;
      ALTER TABLE detections RENAME COLUMN x TO x1;
      ALTER TABLE detections RENAME COLUMN y TO y1;
      ALTER TABLE detections RENAME COLUMN width TO x2;
      ALTER TABLE detections RENAME COLUMN height TO y2;
    `
    }
  ],
  retention: [{ table: 'detections', time: 'at', key: 'id', maxAgeMs: 7 * DAY_MS, maxRows: 1_000_000 }]
}

/**
 * The store's migrations as they shipped before each subsystem owned its tables (agent/store.ts at a25b995),
 * copied verbatim: the tests build databases of earlier versions with them and open them with today's Store.
 * Never edit: this is what databases in the field were made with.
 */
export const PREVIOUS_MIGRATIONS: ReadonlyArray<{ version: number, sql: string }> = [
  {
    version: 1,
    sql: `
      CREATE TABLE peers (
        peer_id    TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        state      TEXT NOT NULL,
        role       TEXT NOT NULL,
        addrs      TEXT NOT NULL,            -- JSON array of multiaddrs
        last_seen  INTEGER NOT NULL,         -- ms since the epoch
        health     TEXT,                     -- JSON: the last health beacon's figures
        updated_at INTEGER NOT NULL
      );
      CREATE TABLE events (
        id      INTEGER PRIMARY KEY,
        at      INTEGER NOT NULL,            -- ms since the epoch
        type    TEXT NOT NULL,               -- e.g. member.state
        peer_id TEXT,
        data    TEXT NOT NULL                -- JSON
      );
      CREATE INDEX events_at ON events (at);
    `
  },
  {
    version: 2,
    sql: `
      CREATE TABLE state (
        key   TEXT PRIMARY KEY,              -- e.g. election.term
        value TEXT NOT NULL                  -- JSON
      );
      CREATE TABLE decisions (
        id          TEXT PRIMARY KEY,
        term        INTEGER NOT NULL,
        coordinator TEXT NOT NULL,           -- peer id of the coordinator that decided
        target      TEXT NOT NULL,           -- peer id of the node told to act
        action      TEXT NOT NULL,           -- run | stop
        work_id     TEXT NOT NULL,
        reason      TEXT NOT NULL,
        at          INTEGER NOT NULL,        -- when it was decided (ms since the epoch)
        outcome     TEXT,                    -- applied | rejected | stale; null until the target answers
        detail      TEXT,
        outcome_at  INTEGER
      );
      CREATE INDEX decisions_at ON decisions (at);
    `
  },
  {
    version: 3,
    sql: `
      -- Raw sensor readings, in arrival order (rowid): retention prunes from the front, so no index slows ingest.
      CREATE TABLE readings (
        sensor TEXT NOT NULL,
        metric TEXT NOT NULL,
        ts     INTEGER NOT NULL,             -- when measured (ms since the epoch)
        value  REAL NOT NULL
      );
      -- Per-minute (period 60000) and per-hour (3600000) summaries, kept longer than the raw readings.
      CREATE TABLE rollups (
        period    INTEGER NOT NULL,
        sensor    TEXT NOT NULL,
        metric    TEXT NOT NULL,
        start     INTEGER NOT NULL,          -- start of the minute or hour (ms since the epoch)
        count     INTEGER NOT NULL,
        min_value REAL NOT NULL,
        max_value REAL NOT NULL,
        sum_value REAL NOT NULL,
        last      REAL NOT NULL,
        last_ts   INTEGER NOT NULL,
        PRIMARY KEY (period, sensor, metric, start)
      ) WITHOUT ROWID;
      CREATE INDEX rollups_start ON rollups (period, start);
      -- The latest reading of each sensor metric: what "noodle sensors" lists.
      CREATE TABLE sensors (
        sensor    TEXT NOT NULL,
        metric    TEXT NOT NULL,
        value     REAL NOT NULL,
        ts        INTEGER NOT NULL,
        first_seen INTEGER NOT NULL,         -- when its first message arrived (ms since the epoch)
        last_seen INTEGER NOT NULL,          -- when its last message arrived
        count     INTEGER NOT NULL,
        PRIMARY KEY (sensor, metric)
      ) WITHOUT ROWID;
      -- Messages that could not be read, with why: bounded, newest kept.
      CREATE TABLE dead_letters (
        id     INTEGER PRIMARY KEY,
        at     INTEGER NOT NULL,
        topic  TEXT NOT NULL,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL,
        size   INTEGER NOT NULL,             -- the payload's full size
        bytes  BLOB NOT NULL                 -- its first bytes
      );
      -- Running totals that survive restarts (ingest.received…).
      CREATE TABLE counters (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
      ) WITHOUT ROWID;
    `
  },
  {
    version: 4,
    sql: `
      -- ONNX models registered on this node, by content (sha256 of the file as given).
      CREATE TABLE models (
        id             TEXT PRIMARY KEY,
        name           TEXT NOT NULL,        -- the file name it was compiled from
        file           TEXT NOT NULL,        -- our copy of it
        optimized_file TEXT,                 -- its graph optimized for this box, when that worked
        size_bytes     INTEGER NOT NULL,
        ir_version     INTEGER NOT NULL,
        opset          INTEGER NOT NULL,
        inputs         TEXT NOT NULL,        -- JSON: [{ name, dtype, shape }]
        outputs        TEXT NOT NULL,
        created_at     INTEGER NOT NULL
      );
      -- Measured latency per execution provider.
      CREATE TABLE model_benchmarks (
        model_id TEXT NOT NULL REFERENCES models (id) ON DELETE CASCADE,
        provider TEXT NOT NULL,
        runs     INTEGER NOT NULL,
        p50_ms   REAL NOT NULL,
        p99_ms   REAL NOT NULL,
        at       INTEGER NOT NULL,
        PRIMARY KEY (model_id, provider)
      ) WITHOUT ROWID;
    `
  },
  {
    version: 5,
    sql: `
      -- What the cameras' models found (results only, never frames).
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
    version: 6,
    sql: `
      -- The intra-op threads a model's latency was measured with (and it runs with, on its fastest provider).
      ALTER TABLE model_benchmarks ADD COLUMN threads INTEGER NOT NULL DEFAULT 1;
    `
  },
  {
    version: 7,
    sql: `
      -- Operator accounts: who may use the API beyond the local socket.
      CREATE TABLE operators (
        user_id       TEXT PRIMARY KEY,      -- a random UUID
        username      TEXT NOT NULL UNIQUE,  -- lower case
        email         TEXT NOT NULL UNIQUE,  -- lower case
        password_hash TEXT NOT NULL,         -- scrypt$N$r$p$salt$hash, never the password
        first_name    TEXT NOT NULL,
        last_name     TEXT NOT NULL,
        phone         TEXT,
        role          TEXT NOT NULL,         -- viewer, operator or admin
        status        TEXT NOT NULL,         -- active
        created_at    INTEGER NOT NULL
      );
      -- Administrative actions: who did what to what, and when.
      CREATE TABLE audit_log (
        id     INTEGER PRIMARY KEY,
        at     INTEGER NOT NULL,
        actor  TEXT NOT NULL,                -- "local" for the Unix socket, else a username
        action TEXT NOT NULL,                -- operator.register, operator.remove…
        target TEXT NOT NULL,
        detail TEXT NOT NULL
      );
      -- API tokens for the TCP listener: only their sha256 is kept, so a copy of the store grants nothing.
      CREATE TABLE api_tokens (
        token_hash TEXT PRIMARY KEY,
        user_id    TEXT NOT NULL REFERENCES operators (user_id) ON DELETE CASCADE,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
      ) WITHOUT ROWID;
    `
  },
  {
    version: 8,
    sql: `
      -- Retention prunes sensor tables by time through these indexes: by arrival order alone, one reading
      -- timed far ahead stalled pruning of everything behind it.
      CREATE INDEX readings_ts ON readings (ts);
      CREATE INDEX sensors_last_seen ON sensors (last_seen);
    `
  },
  {
    version: 9,
    sql: `
      -- Where a model came from: compiled by an operator, fetched on request, or kept on standby for work that
      -- may move here (only standby copies are collected once no work names them).
      ALTER TABLE models ADD COLUMN origin TEXT NOT NULL DEFAULT 'compiled';
      -- Each file's size and modification time when registered: a file that differs is not loaded (torn).
      ALTER TABLE models ADD COLUMN file_mtime_ms INTEGER;
      ALTER TABLE models ADD COLUMN optimized_size INTEGER;
      ALTER TABLE models ADD COLUMN optimized_mtime_ms INTEGER;
      -- Retention prunes these tables by time through these indexes.
      CREATE INDEX detections_at ON detections (at);
      CREATE INDEX audit_log_at ON audit_log (at);
      CREATE INDEX api_tokens_expires_at ON api_tokens (expires_at);
    `
  }
]

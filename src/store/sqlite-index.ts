/**
 * The embedded Index: SQLite in WAL mode with synchronous=FULL, so a commit that returned is on
 * disk (a STOW acknowledged is never lost). Every write is one transaction.
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { cachedStatement } from "./sqlite-statements.js";
import type { DicomJsonAttribute, DicomJsonDataset } from "../dicom/index.js";
import { decodeFrameTable, encodeFrameTable } from "./frame-table.js";
import type { SearchQuery, SearchResult } from "./query.js";
import { migrate, SCHEMA } from "./sqlite-schema.js";
import type { AccessFilter } from "./access.js";
import { accessSql } from "./sqlite-access.js";
import { searchSqlite } from "./sqlite-search.js";
import { foldText } from "./text-fold.js";
import type {
  BulkDataEntry,
  CommitOutcome,
  DuplicatePolicy,
  FrameRanges,
  Index,
  IndexStats,
  InstanceRecord,
  InstanceRow,
  MetadataChunks,
  Scope,
} from "./types.js";

type Db = Database.Database;

interface InstanceDbRow {
  study_uid: string;
  series_uid: string;
  sop_uid: string;
  sop_class_uid: string;
  transfer_syntax_uid: string;
  blob_key: string;
  file_size: number;
  sha256: string;
  instance_number: number | null;
  number_of_frames: number | null;
  stored_at: number;
}

const INSTANCE_COLUMNS = `st.study_uid, se.series_uid, i.sop_uid, i.sop_class_uid, i.transfer_syntax_uid, i.blob_key,
  i.file_size, i.sha256, i.instance_number, i.number_of_frames, i.stored_at`;
const INSTANCE_FROM = `instances i JOIN series se ON se.pk = i.series_pk JOIN studies st ON st.pk = i.study_pk`;
const PRESENTATION_ORDER = `ORDER BY se.series_number IS NULL, se.series_number, se.pk, i.instance_number IS NULL, i.instance_number, i.pk`;

const toRow = (r: InstanceDbRow): InstanceRow => ({
  studyUid: r.study_uid,
  seriesUid: r.series_uid,
  sopUid: r.sop_uid,
  sopClassUid: r.sop_class_uid,
  transferSyntaxUid: r.transfer_syntax_uid,
  blobKey: r.blob_key,
  fileSize: r.file_size,
  sha256: r.sha256,
  instanceNumber: r.instance_number,
  numberOfFrames: r.number_of_frames,
  storedAt: r.stored_at,
});

/** First value of an attribute as text (PN: all component groups joined by "="). */
function text(ds: DicomJsonDataset, tag: string): string | null {
  const value = ds[tag]?.Value?.[0];
  if (value === undefined || value === null) return null;
  if (typeof value === "object") {
    const pn = value as { Alphabetic?: string; Ideographic?: string; Phonetic?: string };
    if ("Alphabetic" in pn || "Ideographic" in pn || "Phonetic" in pn) {
      const groups = [pn.Alphabetic ?? "", pn.Ideographic ?? "", pn.Phonetic ?? ""];
      while (groups.length > 1 && groups[groups.length - 1] === "") groups.pop();
      return groups.join("=");
    }
    return null;
  }
  return String(value);
}

function integer(ds: DicomJsonDataset, tag: string): number | null {
  const value = ds[tag]?.Value?.[0];
  const n = typeof value === "number" ? value : typeof value === "string" ? Number(value) : NaN;
  return Number.isFinite(n) ? Math.trunc(n) : null;
}

/** Top-level attributes without binary values: what QIDO can match and return at study/series level. */
function levelAttributes(ds: DicomJsonDataset): string {
  const out: Record<string, DicomJsonAttribute> = {};
  for (const [tag, attr] of Object.entries(ds)) {
    if (attr.BulkDataURI !== undefined || attr.InlineBinary !== undefined) continue;
    out[tag] = attr;
  }
  return JSON.stringify(out);
}

/** Single-instance lookups kept in memory (see `instances`). */
const INSTANCE_ROW_CACHE_ENTRIES = 1024;

export class SqliteIndex implements Index {
  readonly db: Db;
  private readonly statements;
  /**
   * Rows of single-instance scopes (study/series/instance UIDs → row), as read at `rowsVersion`.
   * A viewer asks for the same instance again and again (frames, rendered images), and the join
   * was one of the larger costs of a cached image. Valid while nothing changed the database: writes
   * through this connection clear it (commitInstances, delete), and PRAGMA data_version, which
   * changes when another connection (another process, e.g. `voxelgate import`) commits, is checked
   * on every lookup.
   */
  private readonly instanceRows = new Map<string, readonly InstanceRow[]>();
  private rowsVersion: unknown = undefined;
  private readonly dataVersion: Database.Statement<[], number>;

  constructor(file: string) {
    if (file !== ":memory:") mkdirSync(dirname(file), { recursive: true });
    this.db = new Database(file);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = FULL");
    this.db.pragma("foreign_keys = ON");
    this.db.pragma("busy_timeout = 5000");
    this.db.exec(SCHEMA);
    migrate(this.db);
    const db = this.db;
    this.dataVersion = db.prepare<[], number>("PRAGMA data_version").pluck();
    this.statements = {
      studyByUid: db.prepare<[string], { pk: number }>("SELECT pk FROM studies WHERE study_uid = ?"),
      seriesByUid: db.prepare<[string], { pk: number; study_pk: number }>("SELECT pk, study_pk FROM series WHERE series_uid = ?"),
      instanceByUid: db.prepare<[string], InstanceDbRow & { pk: number; series_pk: number; study_pk: number }>(
        `SELECT ${INSTANCE_COLUMNS}, i.pk, i.series_pk, i.study_pk FROM ${INSTANCE_FROM} WHERE i.sop_uid = ?`,
      ),
      upsertStudy: db.prepare(
        `INSERT INTO studies (study_uid, study_date, study_time, accession_number, study_id, study_description,
           referring_physician_name, referring_physician_name_fold, patient_name, patient_name_fold, patient_id,
           patient_birth_date, patient_sex, issuer_of_patient_id, institution_name, attributes, updated_at)
         VALUES (@study_uid, @study_date, @study_time, @accession_number, @study_id, @study_description,
           @referring_physician_name, @referring_physician_name_fold, @patient_name, @patient_name_fold, @patient_id,
           @patient_birth_date, @patient_sex, @issuer_of_patient_id, @institution_name, @attributes, @now)
         ON CONFLICT(study_uid) DO UPDATE SET study_date = excluded.study_date, study_time = excluded.study_time,
           accession_number = excluded.accession_number, study_id = excluded.study_id, study_description = excluded.study_description,
           referring_physician_name = excluded.referring_physician_name, referring_physician_name_fold = excluded.referring_physician_name_fold,
           patient_name = excluded.patient_name, patient_name_fold = excluded.patient_name_fold, patient_id = excluded.patient_id,
           patient_birth_date = excluded.patient_birth_date, patient_sex = excluded.patient_sex,
           issuer_of_patient_id = excluded.issuer_of_patient_id, institution_name = excluded.institution_name, attributes = excluded.attributes,
           version = version + 1, updated_at = excluded.updated_at
         RETURNING pk`,
      ),
      upsertSeries: db.prepare(
        `INSERT INTO series (study_pk, series_uid, modality, series_number, series_description, pps_start_date, pps_start_time, attributes, updated_at)
         VALUES (@study_pk, @series_uid, @modality, @series_number, @series_description, @pps_start_date, @pps_start_time, @attributes, @now)
         ON CONFLICT(series_uid) DO UPDATE SET modality = excluded.modality, series_number = excluded.series_number,
           series_description = excluded.series_description, pps_start_date = excluded.pps_start_date,
           pps_start_time = excluded.pps_start_time, attributes = excluded.attributes, version = version + 1, updated_at = excluded.updated_at
         RETURNING pk, study_pk`,
      ),
      insertInstance: db.prepare(
        `INSERT INTO instances (series_pk, study_pk, sop_uid, sop_class_uid, instance_number, rows, columns, bits_allocated,
           number_of_frames, transfer_syntax_uid, blob_key, file_size, sha256, stored_at, metadata, metadata_length, metadata_crc32,
           frames, bulk, ranges_in_file)
         VALUES (@series_pk, @study_pk, @sop_uid, @sop_class_uid, @instance_number, @rows, @columns, @bits_allocated,
           @number_of_frames, @transfer_syntax_uid, @blob_key, @file_size, @sha256, @now, @metadata, @metadata_length, @metadata_crc32,
           @frames, @bulk, @ranges_in_file)`,
      ),
      deleteInstance: db.prepare<[number]>("DELETE FROM instances WHERE pk = ?"),
      addIntent: db.prepare<[string]>("INSERT OR IGNORE INTO blob_intents (key) VALUES (?)"),
      clearIntent: db.prepare<[string]>("DELETE FROM blob_intents WHERE key = ?"),
      framesOf: db.prepare<[string], { frames: Buffer | null; ranges_in_file: number }>(
        "SELECT frames, ranges_in_file FROM instances WHERE sop_uid = ?",
      ),
      bulkOf: db.prepare<[string], { bulk: string }>("SELECT bulk FROM instances WHERE sop_uid = ?"),
      stats: db.prepare<[], IndexStats>(
        "SELECT (SELECT count(*) FROM studies) AS studies, (SELECT count(*) FROM series) AS series, (SELECT count(*) FROM instances) AS instances",
      ),
    };
  }
  /** A prepared statement, compiled once per SQL text. */
  private statement<P extends unknown[] = unknown[], R = unknown>(sql: string): Database.Statement<P, R> {
    return cachedStatement<P, R>(this.db, sql);
  }

  commitInstance(record: InstanceRecord, policy: DuplicatePolicy): CommitOutcome {
    return this.commitInstances([record], policy)[0] as CommitOutcome;
  }

  commitInstances(records: InstanceRecord[], policy: DuplicatePolicy): CommitOutcome[] {
    try {
      return this.commit(records, policy);
    } finally {
      this.instanceRows.clear();
    }
  }

  private commit(records: InstanceRecord[], policy: DuplicatePolicy): CommitOutcome[] {
    // One transaction (one WAL sync) for the batch; a conflict rolls back only its own savepoint.
    const insertOne = this.db.transaction((record: InstanceRecord) => this.insertRecord(record, policy));
    const run = this.db.transaction((): CommitOutcome[] =>
      records.map((record) => {
        try {
          return insertOne(record);
        } catch (err) {
          if (err instanceof IndexConflict) return { status: "conflict", reason: err.message };
          throw err;
        }
      }),
    );
    return run.immediate();
  }

  /** Inserts one instance; run inside a savepoint (better-sqlite3 nests transactions as savepoints). */
  private insertRecord(record: InstanceRecord, policy: DuplicatePolicy): CommitOutcome {
    const existing = this.statements.instanceByUid.get(record.sopUid);
    let outcome: CommitOutcome = { status: "stored" };
    if (existing) {
      if (existing.sha256 === record.sha256) return { status: "identical" };
      if (policy === "ignore") return { status: "ignored" };
      if (policy === "reject") {
        return {
          status: "conflict",
          reason: `an instance with SOP Instance UID ${record.sopUid} is already stored with different content (duplicate policy: reject)`,
        };
      }
      this.statements.deleteInstance.run(existing.pk);
      this.pruneEmpty(existing.series_pk, existing.study_pk);
      outcome = { status: "overwritten", oldBlobKey: existing.blob_key };
    }
    const ds = record.metadata;
    const now = Date.now();
    const attributes = levelAttributes(ds);
    const study = this.statements.upsertStudy.get({
      study_uid: record.studyUid,
      study_date: text(ds, "00080020"),
      study_time: text(ds, "00080030"),
      accession_number: text(ds, "00080050"),
      study_id: text(ds, "00200010"),
      study_description: text(ds, "00081030"),
      referring_physician_name: text(ds, "00080090"),
      referring_physician_name_fold: foldOrNull(text(ds, "00080090")),
      patient_name: text(ds, "00100010"),
      patient_name_fold: foldOrNull(text(ds, "00100010")),
      patient_id: text(ds, "00100020"),
      patient_birth_date: text(ds, "00100030"),
      patient_sex: text(ds, "00100040"),
      issuer_of_patient_id: text(ds, "00100021"),
      institution_name: text(ds, "00080080"),
      attributes,
      now,
    }) as { pk: number };
    const existingSeries = this.statements.seriesByUid.get(record.seriesUid);
    if (existingSeries && existingSeries.study_pk !== study.pk) {
      throw new IndexConflict(`series ${record.seriesUid} already belongs to another study`);
    }
    const series = this.statements.upsertSeries.get({
      study_pk: study.pk,
      series_uid: record.seriesUid,
      modality: text(ds, "00080060"),
      series_number: integer(ds, "00200011"),
      series_description: text(ds, "0008103E"),
      pps_start_date: text(ds, "00400244"),
      pps_start_time: text(ds, "00400245"),
      attributes,
      now,
    }) as { pk: number; study_pk: number };
    this.statements.insertInstance.run({
      series_pk: series.pk,
      study_pk: study.pk,
      sop_uid: record.sopUid,
      sop_class_uid: record.sopClassUid,
      instance_number: integer(ds, "00200013"),
      rows: integer(ds, "00280010"),
      columns: integer(ds, "00280011"),
      bits_allocated: integer(ds, "00280100"),
      number_of_frames: integer(ds, "00280008"),
      transfer_syntax_uid: record.transferSyntaxUid,
      blob_key: record.blobKey,
      file_size: record.fileSize,
      sha256: record.sha256,
      now,
      metadata: record.metadataChunk,
      metadata_length: record.metadataLength,
      metadata_crc32: record.metadataCrc32,
      frames: record.frames.length > 0 ? encodeFrameTable(record.frames) : null,
      bulk: JSON.stringify(record.bulk),
      ranges_in_file: record.rangesInFile ? 1 : 0,
    });
    this.statements.clearIntent.run(record.blobKey);
    return outcome;
  }

  /** Deletes a series/study that lost its last instance. */
  private pruneEmpty(seriesPk: number, studyPk: number): void {
    this.statement("DELETE FROM series WHERE pk = ? AND NOT EXISTS (SELECT 1 FROM instances WHERE series_pk = ?)").run(seriesPk, seriesPk);
    this.statement("DELETE FROM studies WHERE pk = ? AND NOT EXISTS (SELECT 1 FROM series WHERE study_pk = ?)").run(studyPk, studyPk);
  }

  addBlobIntents(keys: string[]): void {
    if (keys.length === 0) return;
    const insert = this.statement("INSERT OR IGNORE INTO blob_intents (key) VALUES (?)");
    this.withoutSync(() => {
      for (const key of keys) insert.run(key);
    });
  }

  clearBlobIntents(keys: string[]): void {
    if (keys.length === 0) return;
    const remove = this.statement("DELETE FROM blob_intents WHERE key = ?");
    this.withoutSync(() => {
      for (const key of keys) remove.run(key);
    });
  }

  /**
   * A transaction without its own WAL sync: it survives a process crash (the WAL is written), and
   * the next FULL commit (the instances') syncs it to disk. Only a power loss in between could
   * forget an intent, which leaks a file, never loses one.
   */
  private withoutSync(work: () => void): void {
    this.db.pragma("synchronous = NORMAL");
    try {
      this.db.transaction(work)();
    } finally {
      this.db.pragma("synchronous = FULL");
    }
  }

  metadataVersion(scope: Scope): string | undefined {
    const { where, params } = this.scopeWhere(scope);
    const row = this.statement<string[], { version: number | null; n: number; pks: number | null }>(
      `SELECT max(st.version) AS version, count(*) AS n, sum(i.pk % 2147483647) AS pks FROM ${INSTANCE_FROM} WHERE ${where}`,
    ).get(...params);
    if (!row || row.n === 0) return undefined;
    return `${row.version ?? 0}-${row.n}-${row.pks ?? 0}`;
  }

  blobIntents(): Array<{ key: string; referenced: boolean }> {
    return this.statement<[], { key: string; referenced: number }>(
      "SELECT key, EXISTS (SELECT 1 FROM instances WHERE blob_key = blob_intents.key) AS referenced FROM blob_intents",
    )
      .all()
      .map((r) => ({ key: r.key, referenced: r.referenced === 1 }));
  }

  instance(sopUid: string): InstanceRow | undefined {
    const row = this.statements.instanceByUid.get(sopUid);
    return row ? toRow(row) : undefined;
  }

  private scopeWhere(scope: Scope): { where: string; params: string[] } {
    const clauses = ["st.study_uid = ?"];
    const params = [scope.studyUid];
    if (scope.seriesUid !== undefined) {
      clauses.push("se.series_uid = ?");
      params.push(scope.seriesUid);
    }
    if (scope.sopUid !== undefined) {
      clauses.push("i.sop_uid = ?");
      params.push(scope.sopUid);
    }
    return { where: clauses.join(" AND "), params };
  }

  instances(scope: Scope): InstanceRow[] {
    if (scope.sopUid === undefined) return this.readInstances(scope);
    const version = this.dataVersion.get();
    if (version !== this.rowsVersion) {
      this.instanceRows.clear();
      this.rowsVersion = version;
    }
    const key = `${scope.studyUid}/${scope.seriesUid ?? ""}/${scope.sopUid}`;
    let rows = this.instanceRows.get(key);
    if (rows === undefined) {
      // Frozen: the same row objects go to every caller.
      rows = Object.freeze(this.readInstances(scope).map((r) => Object.freeze(r)));
      if (this.instanceRows.size >= INSTANCE_ROW_CACHE_ENTRIES) this.instanceRows.delete(this.instanceRows.keys().next().value as string);
      this.instanceRows.set(key, rows);
    }
    return [...rows];
  }

  private readInstances(scope: Scope): InstanceRow[] {
    const { where, params } = this.scopeWhere(scope);
    const rows = this.statement<string[], InstanceDbRow>(
      `SELECT ${INSTANCE_COLUMNS} FROM ${INSTANCE_FROM} WHERE ${where} ${PRESENTATION_ORDER}`,
    ).all(...params);
    return rows.map(toRow);
  }

  exists(scope: Scope): boolean {
    if (scope.sopUid === undefined && scope.seriesUid === undefined) return this.statements.studyByUid.get(scope.studyUid) !== undefined;
    if (scope.sopUid === undefined) {
      return (
        this.statement<[string, string], { one: number }>(
          "SELECT 1 AS one FROM series se JOIN studies st ON st.pk = se.study_pk WHERE st.study_uid = ? AND se.series_uid = ?",
        ).get(scope.studyUid, scope.seriesUid ?? "") !== undefined
      );
    }
    const { where, params } = this.scopeWhere(scope);
    return this.statement<string[], { one: number }>(`SELECT 1 AS one FROM ${INSTANCE_FROM} WHERE ${where}`).get(...params) !== undefined;
  }

  allows(scope: { studyUid: string; seriesUid?: string }, access: AccessFilter): boolean {
    const part = accessSql(access, "st", scope.seriesUid === undefined ? undefined : "se.series_uid");
    const sql =
      scope.seriesUid === undefined
        ? `SELECT 1 AS one FROM studies st WHERE st.study_uid = ? AND ${part.sql}`
        : `SELECT 1 AS one FROM series se JOIN studies st ON st.pk = se.study_pk WHERE st.study_uid = ? AND se.series_uid = ? AND ${part.sql}`;
    const params = scope.seriesUid === undefined ? [scope.studyUid, ...part.params] : [scope.studyUid, scope.seriesUid, ...part.params];
    let statement = this.allowsStatements.get(sql);
    if (!statement) {
      if (this.allowsStatements.size >= 64) this.allowsStatements.clear();
      statement = this.db.prepare<unknown[], { one: number }>(sql);
      this.allowsStatements.set(sql, statement);
    }
    return statement.get(...params) !== undefined;
  }

  /** allows() runs on every retrieve of a restricted caller (frames included): its statements are kept by shape. */
  private readonly allowsStatements = new Map<string, Database.Statement<unknown[], { one: number }>>();

  frames(sopUid: string): { frames: FrameRanges[]; rangesInFile: boolean } | undefined {
    const row = this.statements.framesOf.get(sopUid);
    if (!row) return undefined;
    return { frames: row.frames ? decodeFrameTable(row.frames) : [], rangesInFile: row.ranges_in_file === 1 };
  }

  bulkData(sopUid: string): BulkDataEntry[] | undefined {
    const row = this.statements.bulkOf.get(sopUid);
    return row ? (JSON.parse(row.bulk) as BulkDataEntry[]) : undefined;
  }

  metadata(scope: Scope): MetadataChunks | undefined {
    const { where, params } = this.scopeWhere(scope);
    const rows = this.statement<
      string[],
      { metadata: Buffer; metadata_length: number; metadata_crc32: number; version: number; pk: number }
    >(
      `SELECT i.metadata, i.metadata_length, i.metadata_crc32, st.version, i.pk FROM ${INSTANCE_FROM} WHERE ${where} ${PRESENTATION_ORDER}`,
    ).all(...params);
    if (rows.length === 0) return undefined;
    return {
      chunks: rows.map((r) => r.metadata),
      lengths: rows.map((r) => r.metadata_length),
      crcs: rows.map((r) => r.metadata_crc32),
      version: this.metadataVersion(scope) ?? "0",
    };
  }

  delete(scope: Scope): string[] {
    try {
      return this.deleteRows(scope);
    } finally {
      this.instanceRows.clear();
    }
  }

  private deleteRows(scope: Scope): string[] {
    const run = this.db.transaction((): string[] => {
      const { where, params } = this.scopeWhere(scope);
      const rows = this.statement<string[], { pk: number; series_pk: number; study_pk: number; blob_key: string }>(
        `SELECT i.pk, i.series_pk, i.study_pk, i.blob_key FROM ${INSTANCE_FROM} WHERE ${where}`,
      ).all(...params);
      const touched = new Map<number, number>();
      for (const r of rows) {
        this.statements.deleteInstance.run(r.pk);
        touched.set(r.series_pk, r.study_pk);
      }
      for (const [seriesPk, studyPk] of touched) {
        this.pruneEmpty(seriesPk, studyPk);
        this.statement("UPDATE studies SET version = version + 1, updated_at = ? WHERE pk = ?").run(Date.now(), studyPk);
      }
      for (const r of rows) this.statements.addIntent.run(r.blob_key);
      return rows.map((r) => r.blob_key);
    });
    return run.immediate();
  }

  search(query: SearchQuery): SearchResult {
    return searchSqlite(this.db, query);
  }

  stats(): IndexStats {
    return this.statements.stats.get() as IndexStats;
  }

  check(): void {
    this.statement("SELECT 1").get();
  }

  close(): void {
    this.db.close();
  }
}

class IndexConflict extends Error {}

const foldOrNull = (value: string | null): string | null => (value === null ? null : foldText(value));

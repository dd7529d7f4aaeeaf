/**
 * The SQLite index schema. One row per study, series and instance; the columns are the QIDO-RS
 * matching keys (PS3.18 Tables 10.6.1-5..7) so indexed queries never open a file, and the
 * `attributes` JSON holds every other non-binary attribute for matching on any attribute.
 */
import type Database from "better-sqlite3";

export const SCHEMA_VERSION = 1;

export const SCHEMA = `
CREATE TABLE IF NOT EXISTS studies (
  pk INTEGER PRIMARY KEY,
  study_uid TEXT NOT NULL UNIQUE,
  study_date TEXT, study_time TEXT,
  accession_number TEXT, study_id TEXT, study_description TEXT,
  referring_physician_name TEXT, referring_physician_name_fold TEXT,
  patient_name TEXT, patient_name_fold TEXT,
  patient_id TEXT, patient_birth_date TEXT, patient_sex TEXT,
  -- what rule-based grants match on (gateway policy): Issuer of Patient ID, Institution Name
  issuer_of_patient_id TEXT, institution_name TEXT,
  -- DICOM JSON (top-level, non-binary) of the latest instance stored in the study
  attributes TEXT NOT NULL,
  -- bumped on every change in the study (metadata ETags)
  version INTEGER NOT NULL DEFAULT 1,
  updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS studies_date ON studies(study_date);
CREATE INDEX IF NOT EXISTS studies_patient_id ON studies(patient_id);
CREATE INDEX IF NOT EXISTS studies_accession ON studies(accession_number);
CREATE INDEX IF NOT EXISTS studies_patient_name_fold ON studies(patient_name_fold);

CREATE TABLE IF NOT EXISTS series (
  pk INTEGER PRIMARY KEY,
  study_pk INTEGER NOT NULL REFERENCES studies(pk) ON DELETE CASCADE,
  series_uid TEXT NOT NULL UNIQUE,
  modality TEXT, series_number INTEGER, series_description TEXT,
  pps_start_date TEXT, pps_start_time TEXT,
  attributes TEXT NOT NULL,
  version INTEGER NOT NULL DEFAULT 1,
  updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS series_study ON series(study_pk);
CREATE INDEX IF NOT EXISTS series_modality ON series(modality);
-- covering for QIDO ModalitiesInStudy / Modality checks per study (no lookup of the wide series row)
CREATE INDEX IF NOT EXISTS series_study_modality ON series(study_pk, modality);

-- Items of Request Attributes Sequence (0040,0275), whose Scheduled Procedure Step ID and
-- Requested Procedure ID are required QIDO-RS series matching keys (PS3.18 Table 10.6.1-5): one
-- row per item, kept from series.attributes by triggers, so sequence matching is an index lookup
-- instead of a scan of every series' JSON.
CREATE TABLE IF NOT EXISTS series_request_keys (
  series_pk INTEGER NOT NULL REFERENCES series(pk) ON DELETE CASCADE,
  item INTEGER NOT NULL,
  scheduled_procedure_step_id TEXT,
  requested_procedure_id TEXT
);
CREATE INDEX IF NOT EXISTS series_request_keys_series ON series_request_keys(series_pk);
CREATE INDEX IF NOT EXISTS series_request_keys_sps ON series_request_keys(scheduled_procedure_step_id);
CREATE INDEX IF NOT EXISTS series_request_keys_rp ON series_request_keys(requested_procedure_id);
CREATE TRIGGER IF NOT EXISTS series_request_keys_insert AFTER INSERT ON series
WHEN instr(NEW.attributes, '"00400275"') > 0 BEGIN
  INSERT INTO series_request_keys (series_pk, item, scheduled_procedure_step_id, requested_procedure_id)
  SELECT NEW.pk, j.key, json_extract(j.value, '$."00400009".Value[0]'), json_extract(j.value, '$."00401001".Value[0]')
  FROM json_each(NEW.attributes, '$."00400275".Value') j;
END;
CREATE TRIGGER IF NOT EXISTS series_request_keys_update AFTER UPDATE OF attributes ON series
WHEN instr(NEW.attributes, '"00400275"') > 0 OR instr(OLD.attributes, '"00400275"') > 0 BEGIN
  DELETE FROM series_request_keys WHERE series_pk = NEW.pk;
  INSERT INTO series_request_keys (series_pk, item, scheduled_procedure_step_id, requested_procedure_id)
  SELECT NEW.pk, j.key, json_extract(j.value, '$."00400009".Value[0]'), json_extract(j.value, '$."00401001".Value[0]')
  FROM json_each(NEW.attributes, '$."00400275".Value') j;
END;

-- One-time fill for series stored before series_request_keys existed.
CREATE TABLE IF NOT EXISTS schema_backfills (name TEXT PRIMARY KEY);
INSERT INTO series_request_keys (series_pk, item, scheduled_procedure_step_id, requested_procedure_id)
  SELECT s.pk, j.key, json_extract(j.value, '$."00400009".Value[0]'), json_extract(j.value, '$."00401001".Value[0]')
  FROM series s, json_each(s.attributes, '$."00400275".Value') j
  WHERE NOT EXISTS (SELECT 1 FROM schema_backfills WHERE name = 'series_request_keys');
INSERT OR IGNORE INTO schema_backfills (name) VALUES ('series_request_keys');

-- Blob files about to be renamed into place, or about to be deleted: a crash between the file step
-- and the index step leaves a key here, and start-up deletes such a file unless an instance uses it.
CREATE TABLE IF NOT EXISTS blob_intents (key TEXT PRIMARY KEY);

CREATE TABLE IF NOT EXISTS instances (
  pk INTEGER PRIMARY KEY,
  series_pk INTEGER NOT NULL REFERENCES series(pk) ON DELETE CASCADE,
  study_pk INTEGER NOT NULL REFERENCES studies(pk) ON DELETE CASCADE,
  sop_uid TEXT NOT NULL UNIQUE,
  sop_class_uid TEXT NOT NULL,
  instance_number INTEGER,
  rows INTEGER, columns INTEGER, bits_allocated INTEGER, number_of_frames INTEGER,
  transfer_syntax_uid TEXT NOT NULL,
  blob_key TEXT NOT NULL,
  file_size INTEGER NOT NULL,
  sha256 TEXT NOT NULL,
  stored_at INTEGER NOT NULL,
  -- instance DICOM JSON, raw deflate with a full flush: concatenable into series/study documents
  metadata BLOB NOT NULL,
  metadata_length INTEGER NOT NULL,
  metadata_crc32 INTEGER NOT NULL,
  -- frame table (frame-table.ts) and bulk data table (JSON), byte ranges in the stored file
  frames BLOB,
  bulk TEXT NOT NULL,
  ranges_in_file INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_series ON instances(series_pk, instance_number);
CREATE INDEX IF NOT EXISTS instances_study ON instances(study_pk);
CREATE INDEX IF NOT EXISTS instances_sop_class ON instances(sop_class_uid);
`;

/**
 * Upgrades a database made by an earlier version in place: columns added since are added (SQLite
 * cannot say ADD COLUMN IF NOT EXISTS, so the table is asked) and filled from the stored attributes
 * JSON, in one transaction; then their indexes. Safe to run on every start.
 */
export function migrate(db: Database.Database): void {
  const columns = new Set((db.prepare("PRAGMA table_info(studies)").all() as Array<{ name: string }>).map((c) => c.name));
  if (!columns.has("issuer_of_patient_id") || !columns.has("institution_name")) {
    db.transaction(() => {
      if (!columns.has("issuer_of_patient_id")) db.exec("ALTER TABLE studies ADD COLUMN issuer_of_patient_id TEXT");
      if (!columns.has("institution_name")) db.exec("ALTER TABLE studies ADD COLUMN institution_name TEXT");
      db.exec(`UPDATE studies SET
        issuer_of_patient_id = json_extract(attributes, '$."00100021".Value[0]'),
        institution_name = json_extract(attributes, '$."00080080".Value[0]')`);
    })();
  }
  db.exec(`CREATE INDEX IF NOT EXISTS studies_issuer_of_patient_id ON studies(issuer_of_patient_id);
    CREATE INDEX IF NOT EXISTS studies_institution_name ON studies(institution_name);`);
}

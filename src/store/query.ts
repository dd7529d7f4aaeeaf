/**
 * The backend-neutral search model (QIDO-RS, PS3.18 §10.6): what the dicomweb layer asks an
 * Index for. PLACEHOLDER: refined by the QIDO work.
 */
import type { DicomJsonDataset } from "../dicom/index.js";

export type Level = "study" | "series" | "instance";

export interface SearchQuery {
  level: Level;
  studyUid?: string;
  seriesUid?: string;
  limit?: number;
  offset: number;
}

export interface SearchResult {
  matches: DicomJsonDataset[];
  /** True when more matches exist beyond limit (Warning: 299). */
  truncated: boolean;
}

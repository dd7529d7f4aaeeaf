/** DICOM JSON from an upstream turned into what the local gap filling needs. */
import { type Dataset, type DicomJsonDataset, jsonToDataset } from "../../dicom/index.js";
import { ACCESS_TAGS, type AccessAttributes } from "../../store/access.js";

/** The first value of an attribute when it is a string (UIDs, IDs, names), else undefined. */
export function firstString(ds: DicomJsonDataset, tag: string): string | undefined {
  const v = (ds[tag] as { Value?: unknown[] } | undefined)?.Value?.[0];
  return typeof v === "string" ? v : undefined;
}

/** What grant rules look at, as a result or instance of `studyUid` states it. */
export function accessAttributesOf(ds: DicomJsonDataset, studyUid: string): AccessAttributes {
  return {
    studyUid,
    patientId: firstString(ds, ACCESS_TAGS.patientId),
    issuerOfPatientId: firstString(ds, ACCESS_TAGS.issuerOfPatientId),
    institutionName: firstString(ds, ACCESS_TAGS.institutionName),
  };
}

const isBinary = (a: unknown): boolean => {
  const attr = a as { BulkDataURI?: unknown; InlineBinary?: unknown };
  return attr.BulkDataURI !== undefined || attr.InlineBinary !== undefined;
};

/**
 * The attributes of instance metadata as a Dataset, without values held as BulkDataURI (the
 * renderer and codecs need the Image Pixel and presentation attributes, not the pixels).
 */
export function datasetOfMetadata(json: DicomJsonDataset): { dataset: Dataset; frames: number } {
  const plain: DicomJsonDataset = {};
  for (const [tag, attribute] of Object.entries(json)) {
    if ((attribute as { BulkDataURI?: unknown }).BulkDataURI === undefined) plain[tag] = attribute;
  }
  const { dataset } = jsonToDataset(plain);
  const n = (json["00280008"] as { Value?: unknown[] } | undefined)?.Value?.[0];
  const frames = typeof n === "number" ? n : Number(n ?? 1) || 1;
  return { dataset, frames };
}

/** includefield=all filled in: the instance's metadata attributes a search result lacks (no binary values). */
export function mergeIncludeAll(result: DicomJsonDataset, metadata: DicomJsonDataset): void {
  const have = new Set(Object.keys(result).map((k) => k.toUpperCase()));
  for (const [tag, attribute] of Object.entries(metadata)) {
    if (have.has(tag.toUpperCase()) || isBinary(attribute) || tag.startsWith("0002")) continue;
    result[tag] = attribute;
  }
  // Keep the attributes in tag order, as DICOM JSON writers do.
  const sorted = Object.entries(result).sort(([a], [b]) => a.toUpperCase().localeCompare(b.toUpperCase()));
  for (const [tag] of sorted) delete result[tag];
  for (const [tag, attribute] of sorted) result[tag] = attribute;
}

/**
 * DICOM core suite: header parse + DICOM JSON of a 512×512 CT instance (ours vs dcmjs), and the
 * frame locator on 1,000-frame instances (encapsulated without Basic Offset Table, and native).
 *
 * Every input is generated here from a fixed seed, so the bench needs no files; pydicom's
 * CT_small.dcm is measured as an extra row when the Debian package is installed. Each measured
 * operation is checked once before it is timed: a fast wrong answer throws and fails the run.
 */
import { existsSync, readFileSync } from "node:fs";
import { isDeepStrictEqual } from "node:util";
import dcmjs from "dcmjs";
import {
  type DicomJsonAttribute,
  type DicomJsonDataset,
  datasetToJson,
  type JsonValue,
  jsonToDataset,
  type LocatedFrames,
  locateFrames,
  readDicom,
  tagForKeyword,
  tagToHex,
  thresholdBulkDataPolicy,
  type Vr,
  writePart10,
} from "../src/dicom/index.js";
import type { BenchRow, Goal, Suite, SuiteContext } from "./main.js";
import { seededRandom } from "./seeded-random.js";

const DCMJS_NAME = "dcmjs 0.52.2";
const CT_SMALL = "/usr/lib/python3/dist-packages/pydicom/data/test_files/CT_small.dcm";
const EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1";
const JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70";
const FRAME_COUNT = 1000;
const FRAGMENTS_PER_FRAME = 3;

// ---------------------------------------------------------------------------------------------
// Small helpers

class BenchCheckError extends Error {}

function check(condition: boolean, message: string): asserts condition {
  if (!condition) throw new BenchCheckError(`wrong answer: ${message}`);
}

/** A fixed, valid UID under 2.25 (a UUID-derived root), distinct per `n`. */
const uid = (n: number): string => `2.25.1782638172634912384761238476123${String(n).padStart(4, "0")}`;

function keywordHex(keyword: string): string {
  const tag = tagForKeyword(keyword);
  if (tag === undefined) throw new Error(`bench data: unknown keyword ${keyword}`);
  return tagToHex(tag);
}

/** Adds an attribute by keyword (standard) or 8-hex-digit tag (private). */
function put(ds: DicomJsonDataset, key: string, vr: Vr, ...values: JsonValue[]): void {
  const hex = /^[0-9A-F]{8}$/.test(key) ? key : keywordHex(key);
  const attr: DicomJsonAttribute = { vr };
  if (values.length > 0) attr.Value = values;
  ds[hex] = attr;
}

function code(value: string, scheme: string, meaning: string): DicomJsonDataset {
  const item: DicomJsonDataset = {};
  put(item, "CodeValue", "SH", value);
  put(item, "CodingSchemeDesignator", "SH", scheme);
  put(item, "CodeMeaning", "LO", meaning);
  return item;
}

/** JSON keys in ascending tag order, as DICOM JSON has them. */
function sorted(ds: DicomJsonDataset): DicomJsonDataset {
  const out: DicomJsonDataset = {};
  for (const key of Object.keys(ds).sort()) {
    const attr = ds[key] as DicomJsonAttribute;
    out[key] = attr.vr === "SQ" && attr.Value ? { ...attr, Value: attr.Value.map((item) => sorted(item as DicomJsonDataset)) } : attr;
  }
  return out;
}

function countAttributes(ds: DicomJsonDataset): number {
  let n = 0;
  for (const attr of Object.values(ds)) {
    n++;
    if (attr.vr === "SQ") for (const item of attr.Value ?? []) n += countAttributes(item as DicomJsonDataset);
  }
  return n;
}

function goal(text: string, met: boolean): Goal {
  return { text, met };
}

// ---------------------------------------------------------------------------------------------
// Generated inputs

const STUDY_UID = uid(1);

/** The DICOM JSON of a realistic single-frame CT header (patient … pixel module, sequences, GE-style private blocks). */
function ctHeaderJson(): DicomJsonDataset {
  const ds: DicomJsonDataset = {};
  // SOP Common, General Study/Series/Equipment
  put(ds, "SpecificCharacterSet", "CS", "ISO_IR 100");
  put(ds, "ImageType", "CS", "ORIGINAL", "PRIMARY", "AXIAL");
  put(ds, "InstanceCreationDate", "DA", "20240314");
  put(ds, "InstanceCreationTime", "TM", "101503.123456");
  put(ds, "SOPClassUID", "UI", "1.2.840.10008.5.1.4.1.1.2");
  put(ds, "SOPInstanceUID", "UI", uid(4));
  put(ds, "StudyDate", "DA", "20240314");
  put(ds, "SeriesDate", "DA", "20240314");
  put(ds, "AcquisitionDate", "DA", "20240314");
  put(ds, "ContentDate", "DA", "20240314");
  put(ds, "StudyTime", "TM", "100512");
  put(ds, "SeriesTime", "TM", "101122");
  put(ds, "AcquisitionTime", "TM", "101338.514000");
  put(ds, "ContentTime", "TM", "101338.514000");
  put(ds, "AccessionNumber", "SH", "A20240314-0042");
  put(ds, "Modality", "CS", "CT");
  put(ds, "Manufacturer", "LO", "GE MEDICAL SYSTEMS");
  put(ds, "InstitutionName", "LO", "Voxelgate General Hospital");
  put(ds, "InstitutionAddress", "ST", "1 Imaging Way, Springfield");
  put(ds, "ReferringPhysicianName", "PN", { Alphabetic: "Welby^Marcus^^Dr." });
  put(ds, "StationName", "SH", "CT01OC0");
  put(ds, "StudyDescription", "LO", "CT CHEST W/O CONTRAST");
  put(ds, "ProcedureCodeSequence", "SQ", code("CTCHEST", "99VOXEL", "CT Chest without contrast"));
  put(ds, "SeriesDescription", "LO", "AXIAL 1.25mm STANDARD");
  put(ds, "InstitutionalDepartmentName", "LO", "Radiology");
  put(ds, "PerformingPhysicianName", "PN", { Alphabetic: "House^Gregory" });
  put(ds, "OperatorsName", "PN", { Alphabetic: "Tech^Alice" }, { Alphabetic: "Tech^Bob" });
  put(ds, "ManufacturerModelName", "LO", "LightSpeed VCT");
  const study: DicomJsonDataset = {};
  put(study, "ReferencedSOPClassUID", "UI", "1.2.840.10008.3.1.2.3.1");
  put(study, "ReferencedSOPInstanceUID", "UI", uid(5));
  put(ds, "ReferencedStudySequence", "SQ", study);
  const refs = [6, 7].map((n) => {
    const item: DicomJsonDataset = {};
    put(item, "ReferencedSOPClassUID", "UI", "1.2.840.10008.5.1.4.1.1.2");
    put(item, "ReferencedSOPInstanceUID", "UI", uid(n));
    return item;
  });
  put(ds, "ReferencedImageSequence", "SQ", ...refs);
  put(ds, "AnatomicRegionSequence", "SQ", code("T-D3000", "SRT", "Chest"));
  put(ds, "IrradiationEventUID", "UI", uid(8));
  put(ds, "TimezoneOffsetFromUTC", "SH", "+0100");
  put(ds, "NameOfPhysiciansReadingStudy", "PN", { Alphabetic: "Quinn^Michaela" });
  put(ds, "AdmittingDiagnosesDescription", "LO", "Chronic cough");
  const pps: DicomJsonDataset = {};
  put(pps, "ReferencedSOPClassUID", "UI", "1.2.840.10008.3.1.2.3.3");
  put(pps, "ReferencedSOPInstanceUID", "UI", uid(10));
  put(ds, "ReferencedPerformedProcedureStepSequence", "SQ", pps);
  // GE-style private block (group 0009)
  put(ds, "00090010", "LO", "GEMS_IDEN_01");
  put(ds, "00091001", "LO", "GE_GENESIS_FF");
  put(ds, "00091002", "SH", "CT01");
  put(ds, "00091004", "SH", "LightSpeed VCT");
  put(ds, "00091027", "SL", 1710411338);
  put(ds, "00091030", "SH", "VOXEL");
  put(ds, "000910E3", "UI", uid(9));
  // Patient
  put(ds, "PatientName", "PN", { Alphabetic: "Doe^Jane^Q" });
  put(ds, "PatientID", "LO", "VX-0012345");
  put(ds, "IssuerOfPatientID", "LO", "VOXELGATE");
  put(ds, "PatientBirthDate", "DA", "19700101");
  put(ds, "PatientSex", "CS", "F");
  const other: DicomJsonDataset = {};
  put(other, "PatientID", "LO", "MRN-998877");
  put(other, "IssuerOfPatientID", "LO", "OTHERHOSP");
  put(other, "TypeOfPatientID", "CS", "TEXT");
  put(ds, "OtherPatientIDsSequence", "SQ", other);
  put(ds, "PatientAge", "AS", "054Y");
  put(ds, "PatientSize", "DS", 1.68);
  put(ds, "PatientWeight", "DS", 64.5);
  put(ds, "AdditionalPatientHistory", "LT", "Persistent cough for 6 weeks. Rule out mass.");
  put(ds, "PatientIdentityRemoved", "CS", "NO");
  put(ds, "EthnicGroup", "SH", "UNKNOWN");
  put(ds, "Occupation", "SH", "Teacher");
  put(ds, "SmokingStatus", "CS", "NO");
  put(ds, "PregnancyStatus", "US", 4);
  put(ds, "MedicalAlerts", "LO", "None known");
  put(ds, "Allergies", "LO", "Penicillin");
  put(ds, "PatientComments", "LT", "Prefers morning appointments.");
  // CT Image / acquisition
  put(ds, "ContrastBolusAgent", "LO");
  put(ds, "BodyPartExamined", "CS", "CHEST");
  put(ds, "ScanOptions", "CS", "HELICAL MODE");
  put(ds, "SliceThickness", "DS", 1.25);
  put(ds, "KVP", "DS", 120);
  put(ds, "SpacingBetweenSlices", "DS", 1.25);
  put(ds, "DataCollectionDiameter", "DS", 500);
  put(ds, "DeviceSerialNumber", "LO", "00000000CT0042");
  put(ds, "SoftwareVersions", "LO", "LightSpeedverrel", "07MW18.4");
  put(ds, "ProtocolName", "LO", "5.1 CHEST ROUTINE");
  put(ds, "ReconstructionDiameter", "DS", 360);
  put(ds, "DistanceSourceToDetector", "DS", 949.075);
  put(ds, "DistanceSourceToPatient", "DS", 541);
  put(ds, "GantryDetectorTilt", "DS", 0);
  put(ds, "TableHeight", "DS", 160.5);
  put(ds, "RotationDirection", "CS", "CW");
  put(ds, "ExposureTime", "IS", 800);
  put(ds, "XRayTubeCurrent", "IS", 250);
  put(ds, "Exposure", "IS", 200);
  put(ds, "FilterType", "SH", "BODY FILTER");
  put(ds, "GeneratorPower", "IS", 30000);
  put(ds, "FocalSpots", "DS", 0.7);
  put(ds, "ConvolutionKernel", "SH", "STANDARD");
  put(ds, "PatientPosition", "CS", "FFS");
  put(ds, "RevolutionTime", "FD", 0.8);
  put(ds, "SingleCollimationWidth", "FD", 0.625);
  put(ds, "TotalCollimationWidth", "FD", 40);
  put(ds, "TableSpeed", "FD", 39.375);
  put(ds, "TableFeedPerRotation", "FD", 31.5);
  put(ds, "SpiralPitchFactor", "FD", 0.984375);
  put(ds, "DataCollectionCenterPatient", "FD", 0, 160.5, -120.25);
  put(ds, "ReconstructionTargetCenterPatient", "FD", 0, 160.5, -120.25);
  put(ds, "ExposureModulationType", "CS", "DOSE_MODULATION");
  put(ds, "CTDIvol", "FD", 12.3);
  put(ds, "AcquisitionDateTime", "DT", "20240314101338.514000");
  put(ds, "ContentQualification", "CS", "PRODUCT");
  put(ds, "CalciumScoringMassFactorPatient", "FL", 0.75);
  put(ds, "EstimatedDoseSaving", "FD", 31.25);
  put(ds, "CTDIPhantomTypeCodeSequence", "SQ", code("113691", "DCM", "IEC Body Dosimetry Phantom"));
  // GE-style private block (group 0019)
  put(ds, "00190010", "LO", "GEMS_ACQU_01");
  put(ds, "00191002", "SL", 912);
  put(ds, "00191003", "DS", 2893.4);
  put(ds, "00191004", "DS", 0.5);
  put(ds, "0019100F", "DS", 1375.5);
  put(ds, "00191011", "SS", 2);
  put(ds, "00191018", "LO", "M");
  put(ds, "0019101A", "LO", "ADVANTAGE");
  put(ds, "00191023", "DS", 39.375);
  put(ds, "00191024", "DS", -120.25);
  put(ds, "00191027", "DS", 0.984375);
  put(ds, "0019102C", "DS", 0.8);
  put(ds, "00191039", "SS", 128);
  put(ds, "00191042", "SS", 0);
  put(ds, "00191043", "SS", 1);
  put(ds, "00191047", "SS", 10);
  put(ds, "00191052", "SS", 5);
  // GE-style private block (group 0025)
  put(ds, "00250010", "LO", "GEMS_SERS_01");
  put(ds, "00251006", "SS", 1);
  put(ds, "00251007", "SL", 281);
  put(ds, "00251010", "SL", 0);
  put(ds, "00251011", "SS", 0);
  put(ds, "00251014", "SL", 0);
  put(ds, "00251017", "SL", 0);
  put(ds, "00251018", "SL", 0);
  put(ds, "00251019", "SL", 281);
  put(ds, "0025101A", "SH", "CT01OC0");
  put(ds, "0025101B", "OB");
  // Relationship, image plane
  put(ds, "StudyInstanceUID", "UI", STUDY_UID);
  put(ds, "SeriesInstanceUID", "UI", uid(2));
  put(ds, "StudyID", "SH", "4242");
  put(ds, "SeriesNumber", "IS", 3);
  put(ds, "AcquisitionNumber", "IS", 1);
  put(ds, "InstanceNumber", "IS", 97);
  put(ds, "PatientOrientation", "CS");
  put(ds, "ImagePositionPatient", "DS", -180, -19.5, -120.25);
  put(ds, "ImageOrientationPatient", "DS", 1, 0, 0, 0, 1, 0);
  put(ds, "FrameOfReferenceUID", "UI", uid(3));
  put(ds, "PositionReferenceIndicator", "LO", "SN");
  put(ds, "SliceLocation", "DS", -120.25);
  put(ds, "ImagesInAcquisition", "IS", 281);
  put(ds, "ImageComments", "LT", "Generated by the Voxelgate bench");
  // GE-style private blocks (groups 0021, 0027)
  put(ds, "00210010", "LO", "GEMS_RELA_01");
  put(ds, "00211003", "SS", 1);
  put(ds, "00211035", "SS", 1);
  put(ds, "00211036", "SS", 1);
  put(ds, "00211091", "SS", 0);
  put(ds, "00211092", "FL", 0.5);
  put(ds, "00270010", "LO", "GEMS_IMAG_01");
  put(ds, "00271006", "SL", 281);
  put(ds, "00271010", "SS", 0);
  put(ds, "0027101C", "SL", 0);
  put(ds, "0027101E", "SL", 0);
  put(ds, "0027101F", "SL", 0);
  put(ds, "00271020", "SS", 0);
  put(ds, "00271035", "SS", 0);
  put(ds, "00271040", "SH", "I");
  put(ds, "00271041", "FL", -120.25);
  put(ds, "00271050", "FL", 0.5);
  // Image Pixel, VOI LUT, Modality LUT
  put(ds, "SamplesPerPixel", "US", 1);
  put(ds, "PhotometricInterpretation", "CS", "MONOCHROME2");
  put(ds, "Rows", "US", 512);
  put(ds, "Columns", "US", 512);
  put(ds, "PixelSpacing", "DS", 0.703125, 0.703125);
  put(ds, "BitsAllocated", "US", 16);
  put(ds, "BitsStored", "US", 16);
  put(ds, "HighBit", "US", 15);
  put(ds, "PixelRepresentation", "US", 1);
  put(ds, "PixelPaddingValue", "SS", -2000);
  put(ds, "WindowCenter", "DS", 40, -600);
  put(ds, "WindowWidth", "DS", 400, 1500);
  put(ds, "RescaleIntercept", "DS", -1024);
  put(ds, "RescaleSlope", "DS", 1);
  put(ds, "RescaleType", "LO", "HU");
  put(ds, "WindowCenterWidthExplanation", "LO", "MEDIASTINUM", "LUNG");
  put(ds, "LossyImageCompression", "CS", "00");
  put(ds, "BurnedInAnnotation", "CS", "NO");
  put(ds, "RecognizableVisualFeatures", "CS", "NO");
  // Requests, performed procedure step
  put(ds, "RequestingPhysician", "PN", { Alphabetic: "Welby^Marcus" });
  put(ds, "RequestedProcedureDescription", "LO", "CT CHEST");
  put(ds, "PerformedProcedureStepStartDate", "DA", "20240314");
  put(ds, "PerformedProcedureStepStartTime", "TM", "100512");
  put(ds, "PerformedStationAETitle", "AE", "CT01OC0");
  put(ds, "PerformedStationName", "SH", "CT01OC0");
  put(ds, "PerformedLocation", "SH", "CT ROOM 1");
  put(ds, "PerformedProcedureStepEndDate", "DA", "20240314");
  put(ds, "PerformedProcedureStepEndTime", "TM", "101701");
  put(ds, "CommentsOnThePerformedProcedureStep", "ST", "Patient tolerated the procedure well.");
  put(ds, "RequestedProcedureID", "SH", "RP4242");
  put(ds, "ReasonForTheRequestedProcedure", "LO", "Persistent cough");
  put(ds, "RequestedProcedurePriority", "SH", "ROUTINE");
  put(ds, "PlacerOrderNumberImagingServiceRequest", "LO", "PO-77812");
  put(ds, "FillerOrderNumberImagingServiceRequest", "LO", "FO-77812");
  put(ds, "PerformedProcedureStepID", "SH", "PPS4242");
  put(ds, "PerformedProcedureStepDescription", "LO", "CT CHEST W/O CONTRAST");
  const request: DicomJsonDataset = {};
  put(request, "RequestedProcedureID", "SH", "RP4242");
  put(request, "ScheduledProcedureStepID", "SH", "SPS4242");
  put(request, "ScheduledProcedureStepDescription", "LO", "CT CHEST");
  put(request, "ScheduledProtocolCodeSequence", "SQ", code("CTCHEST", "99VOXEL", "CT Chest protocol"));
  put(ds, "RequestAttributesSequence", "SQ", request);
  // GE-style private block (group 0043)
  put(ds, "00430010", "LO", "GEMS_PARM_01");
  put(ds, "00431001", "SS", 2);
  put(ds, "00431010", "US", 0);
  put(ds, "00431011", "US", 0);
  put(ds, "00431012", "SS", 14, 1, 3);
  put(ds, "00431016", "SS", 0);
  put(ds, "00431018", "DS", 2.8);
  put(ds, "0043101E", "DS", 0.5);
  put(ds, "00431025", "SS", 0, 0, 0, 0, 0, 0, 1, 1);
  put(ds, "00431026", "US", 0, 0, 0, 0, 0, 0);
  put(ds, "00431027", "SH", "/1.0:1");
  put(ds, "00431028", "OB");
  put(ds, "0043102B", "SS", 0, 0, 0, 0);
  put(ds, "00431031", "DS", -0.5, 160.5);
  put(ds, "00431040", "FL", 1.5);
  put(ds, "00431041", "FL", 2.25);
  put(ds, "00431064", "CS", "FULL");
  // GE-style private block (group 0045)
  put(ds, "00450010", "LO", "GEMS_HELIOS_01");
  put(ds, "00451001", "SS", 64);
  put(ds, "00451002", "FL", 0.625);
  put(ds, "00451003", "SS", 0);
  put(ds, "00451004", "CS", "HELICAL");
  put(ds, "00451006", "CS", "IN");
  put(ds, "00451008", "SS", 0);
  put(ds, "0045100A", "FL", 0.5);
  put(ds, "0045100B", "FL", 1.25);
  put(ds, "0045100C", "SS", 1);
  put(ds, "0045100D", "DS", 0.984375);
  put(ds, "00451011", "DS", 40);
  put(ds, "00451012", "SS", 2);
  return ds;
}

/** A simple phantom: a water disc (0 HU) in air, with seeded noise; 16-bit signed, little endian. */
function ctPixels(rows: number, columns: number): Buffer {
  const random = seededRandom(0xc7);
  const out = Buffer.alloc(rows * columns * 2);
  const cx = columns / 2;
  const cy = rows / 2;
  const r2 = (Math.min(rows, columns) * 0.4) ** 2;
  for (let y = 0; y < rows; y++) {
    for (let x = 0; x < columns; x++) {
      const inside = (x - cx) ** 2 + (y - cy) ** 2 < r2;
      const hu = (inside ? 0 : -1000) + Math.round((random() - 0.5) * 40);
      out.writeInt16LE(hu + 1024, (y * columns + x) * 2);
    }
  }
  return out;
}

interface CtInstance {
  file: Buffer;
  /** The header as generated, keys sorted: what our DICOM JSON must give back (plus PixelData). */
  header: DicomJsonDataset;
  attributes: number;
}

function makeCtInstance(): CtInstance {
  const header = sorted(ctHeaderJson());
  const json: DicomJsonDataset = { ...header, "7FE00010": { vr: "OW", InlineBinary: ctPixels(512, 512).toString("base64") } };
  const { dataset } = jsonToDataset(json);
  const file = writePart10(dataset, { transferSyntaxUid: EXPLICIT_VR_LITTLE_ENDIAN });
  return { file, header, attributes: countAttributes(json) };
}

/** Fragment bytes: seeded data; the frame's first fragment opens with a JPEG SOI, the last ends with EOI. */
function fragmentBytes(random: () => number, length: number, first: boolean, last: boolean): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = Math.floor(random() * 256);
  if (first) b.set([0xff, 0xd8, 0xff, 0xc3], 0);
  else {
    // Never look like a codestream start (JPEG SOI, J2K SOC+SIZ, JP2 box) where a frame does not start.
    b[0] = 0x00;
    b[4] = 0x00;
  }
  if (last) b.set([0xff, 0xd9], length - 2);
  return b;
}

interface MultiFrameInstance {
  file: Buffer;
  /** frames[i][j]: bytes of fragment j of frame i, as written. */
  frames: Buffer[][];
}

function multiFrameHeader(sopClassUid: string, rows: number, columns: number, bitsAllocated: number): DicomJsonDataset {
  const ds: DicomJsonDataset = {};
  put(ds, "SOPClassUID", "UI", sopClassUid);
  put(ds, "SOPInstanceUID", "UI", uid(20 + bitsAllocated));
  put(ds, "Modality", "CS", "OT");
  put(ds, "PatientName", "PN", { Alphabetic: "Doe^Jane" });
  put(ds, "PatientID", "LO", "VX-0012345");
  put(ds, "StudyInstanceUID", "UI", STUDY_UID);
  put(ds, "SeriesInstanceUID", "UI", uid(30 + bitsAllocated));
  put(ds, "InstanceNumber", "IS", 1);
  put(ds, "NumberOfFrames", "IS", FRAME_COUNT);
  put(ds, "SamplesPerPixel", "US", 1);
  put(ds, "PhotometricInterpretation", "CS", "MONOCHROME2");
  put(ds, "Rows", "US", rows);
  put(ds, "Columns", "US", columns);
  put(ds, "BitsAllocated", "US", bitsAllocated);
  put(ds, "BitsStored", "US", bitsAllocated);
  put(ds, "HighBit", "US", bitsAllocated - 1);
  put(ds, "PixelRepresentation", "US", 0);
  return ds;
}

/**
 * 1,000 frames of JPEG-lossless-looking data, three fragments each, empty Basic Offset Table.
 * Our writer would re-fragment (one fragment per frame, with a table), so Pixel Data is encoded
 * here by hand after a header-only Part 10 file.
 */
function makeEncapsulatedInstance(): MultiFrameInstance {
  const header = jsonToDataset(multiFrameHeader("1.2.840.10008.5.1.4.1.1.7.2", 256, 256, 8)).dataset;
  const random = seededRandom(0xf4a3e5);
  const frames: Buffer[][] = [];
  for (let f = 0; f < FRAME_COUNT; f++) {
    const fragments: Buffer[] = [];
    for (let j = 0; j < FRAGMENTS_PER_FRAME; j++) {
      const length = 2 * (100 + Math.floor(random() * 200)); // 200–598 bytes, even
      fragments.push(fragmentBytes(random, length, j === 0, j === FRAGMENTS_PER_FRAME - 1));
    }
    frames.push(fragments);
  }
  const item = (length: number): Buffer => {
    const b = Buffer.alloc(8);
    b.writeUInt16LE(0xfffe, 0);
    b.writeUInt16LE(0xe000, 2);
    b.writeUInt32LE(length, 4);
    return b;
  };
  const pixelHeader = Buffer.alloc(12);
  pixelHeader.writeUInt16LE(0x7fe0, 0);
  pixelHeader.writeUInt16LE(0x0010, 2);
  pixelHeader.write("OB", 4, "latin1");
  pixelHeader.writeUInt32LE(0xffffffff, 8);
  const delimiter = Buffer.from([0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]);
  const parts: Buffer[] = [writePart10(header, { transferSyntaxUid: JPEG_LOSSLESS_SV1 }), pixelHeader, item(0)];
  for (const fragment of frames.flat()) parts.push(item(fragment.length), fragment);
  parts.push(delimiter);
  return { file: Buffer.concat(parts), frames };
}

/** 1,000 native 64×64 16-bit frames; every sample of frame i holds i. */
function makeNativeInstance(): MultiFrameInstance {
  const json = multiFrameHeader("1.2.840.10008.5.1.4.1.1.7.3", 64, 64, 16);
  const frameSize = 64 * 64 * 2;
  const pixels = Buffer.alloc(frameSize * FRAME_COUNT);
  for (let i = 0; i < pixels.length; i += 2) pixels.writeUInt16LE(Math.floor(i / frameSize), i);
  const { dataset } = jsonToDataset(json);
  dataset.set({ tag: 0x7fe00010, vr: "OW", bytes: pixels, position: -1 });
  const frames = Array.from({ length: FRAME_COUNT }, (_, i) => [pixels.subarray(i * frameSize, (i + 1) * frameSize)]);
  return { file: writePart10(dataset, { transferSyntaxUid: EXPLICIT_VR_LITTLE_ENDIAN }), frames };
}

// ---------------------------------------------------------------------------------------------
// The measured operations

const bulkData = thresholdBulkDataPolicy(1024, () => "bulk");

function oursToJson(file: Uint8Array): string {
  const result = readDicom(file);
  if (result.error) throw result.error;
  return JSON.stringify(datasetToJson(result.dataset, { bulkData }));
}

interface Dcmjs {
  readFile(buffer: ArrayBuffer): { dict: unknown };
  naturalizeDataset(dict: unknown): Record<string, unknown>;
}

/** dcmjs's default export is `unknown` to us (src/types/dcmjs.d.ts): take the two calls we use, checking they are there. */
function loadDcmjs(): Dcmjs {
  const data = (dcmjs as { data?: { DicomMessage?: unknown; DicomMetaDictionary?: unknown } } | undefined)?.data;
  const message = data?.DicomMessage as { readFile?: unknown } | undefined;
  const dictionary = data?.DicomMetaDictionary as { naturalizeDataset?: unknown } | undefined;
  const readFile = message?.readFile;
  const naturalize = dictionary?.naturalizeDataset;
  if (typeof readFile !== "function" || typeof naturalize !== "function") {
    throw new Error("dcmjs: data.DicomMessage.readFile or data.DicomMetaDictionary.naturalizeDataset is missing");
  }
  return {
    readFile(buffer) {
      const message = (readFile as (this: unknown, buffer: ArrayBuffer) => unknown).call(data?.DicomMessage, buffer);
      const dict = (message as { dict?: unknown } | undefined)?.dict;
      if (typeof dict !== "object" || dict === null) throw new Error("dcmjs: readFile gave no dict");
      return { dict };
    },
    naturalizeDataset(dict) {
      const natural = (naturalize as (this: unknown, dict: unknown) => unknown).call(data?.DicomMetaDictionary, dict);
      if (typeof natural !== "object" || natural === null) throw new Error("dcmjs: naturalizeDataset gave no object");
      return natural as Record<string, unknown>;
    },
  };
}

/** Binary values (ArrayBuffers, typed arrays) become {} so the JSON holds the header only, as ours does with bulk data. */
function dropBinary(_key: string, value: unknown): unknown {
  return value instanceof ArrayBuffer || ArrayBuffer.isView(value) ? {} : value;
}

function dcmjsToJson(api: Dcmjs, file: Uint8Array): string {
  // A Node Buffer may be a view into a shared pool: hand dcmjs exactly the file's bytes.
  const arrayBuffer = file.buffer.slice(file.byteOffset, file.byteOffset + file.byteLength) as ArrayBuffer;
  const { dict } = api.readFile(arrayBuffer);
  return JSON.stringify(api.naturalizeDataset(dict), dropBinary);
}

// ---------------------------------------------------------------------------------------------
// Checks

function checkOurCtJson(text: string, instance: CtInstance): void {
  const json = JSON.parse(text) as DicomJsonDataset;
  const { "7FE00010": pixelData, ...header } = json;
  check(pixelData?.BulkDataURI === "bulk" && pixelData.InlineBinary === undefined, "PixelData should be a BulkDataURI");
  const expectedKeys = Object.keys(instance.header).length;
  check(Object.keys(header).length === expectedKeys, `${Object.keys(header).length} top-level attributes, expected ${expectedKeys}`);
  check(json["0020000D"]?.Value?.[0] === STUDY_UID, "StudyInstanceUID");
  if (!isDeepStrictEqual(header, instance.header)) {
    const differing = Object.keys(instance.header).filter((k) => !isDeepStrictEqual(header[k], instance.header[k]));
    throw new BenchCheckError(`wrong answer: DICOM JSON differs from the generated header at ${differing.join(", ")}`);
  }
}

function checkDcmjsJson(text: string, expected: { studyUid: string; rows: number; patientId: string }): void {
  const natural = JSON.parse(text) as Record<string, unknown>;
  check(natural["StudyInstanceUID"] === expected.studyUid, "dcmjs StudyInstanceUID");
  check(natural["Rows"] === expected.rows, "dcmjs Rows");
  check(natural["PatientID"] === expected.patientId, "dcmjs PatientID");
  check(natural["PixelData"] !== undefined, "dcmjs PixelData");
  check(text.length < 200_000, `dcmjs JSON is ${text.length} characters: binary data was serialised`);
}

function checkFrames(located: LocatedFrames, instance: MultiFrameInstance, file: Uint8Array, kind: "native" | "encapsulated"): void {
  check(located.frames.length === FRAME_COUNT, `${located.frames.length} frames, expected ${FRAME_COUNT}`);
  for (const i of [0, 500, FRAME_COUNT - 1]) {
    const frame = located.frames[i];
    const expected = instance.frames[i] ?? [];
    check(frame?.kind === kind, `frame ${i} should be ${kind}`);
    if (frame.kind === "encapsulated") {
      check(frame.fragments.length === expected.length, `frame ${i} has ${frame.fragments.length} fragments, expected ${expected.length}`);
      const first = frame.fragments[0];
      check(first !== undefined && first.bytes[0] === 0xff && first.bytes[1] === 0xd8, `frame ${i} should start with FF D8`);
      frame.fragments.forEach((f, j) => {
        check(Buffer.compare(f.bytes, expected[j] ?? Buffer.alloc(0)) === 0, `frame ${i} fragment ${j} bytes`);
        check(Buffer.compare(file.subarray(f.position, f.position + f.bytes.length), f.bytes) === 0, `frame ${i} fragment ${j} position`);
      });
    } else {
      check(Buffer.compare(frame.bytes, expected[0] ?? Buffer.alloc(0)) === 0, `frame ${i} bytes`);
      check(Buffer.compare(file.subarray(frame.position, frame.position + frame.length), frame.bytes) === 0, `frame ${i} position`);
    }
  }
  if (kind === "encapsulated") check(located.indexSource === "markers", `frames found by ${located.indexSource}, expected markers`);
}

// ---------------------------------------------------------------------------------------------
// The suite

function headerToJsonRow(
  context: SuiteContext,
  api: Dcmjs,
  name: string,
  file: Buffer,
  checkOurs: (json: string) => void,
  checkPeer: (json: string) => void,
): { row: BenchRow; ours: number; peer: number } {
  checkOurs(oursToJson(file));
  checkPeer(dcmjsToJson(api, file));
  const timing = context.timePair(
    () => oursToJson(file),
    () => dcmjsToJson(api, file),
  );
  const ours = timing.ours.medianUs;
  const peer = timing.peer.medianUs;
  const spread = `runs ${timing.ours.runs}×${timing.ours.batch} / ${timing.peer.runs}×${timing.peer.batch}, min ${timing.ours.minUs.toFixed(0)} / ${timing.peer.minUs.toFixed(0)} µs`;
  return { row: { name, ours, peer, peerName: DCMJS_NAME, unit: "µs/op", ratio: peer / ours, note: spread }, ours, peer };
}

function frameRows(context: SuiteContext, label: string, instance: MultiFrameInstance, kind: "native" | "encapsulated"): BenchRow[] {
  const file = instance.file;
  const read = readDicom(file);
  if (read.error) throw read.error;
  const located = locateFrames(read.dataset);
  checkFrames(located, instance, file, kind);
  const whole = context.time(() => locateFrames(readDicom(file).dataset)).medianUs / 1000;
  const locate = context.time(() => locateFrames(read.dataset)).medianUs / 1000;
  const mb = (file.length / 1e6).toFixed(1);
  return [
    {
      name: `Frame locator, ${label}: readDicom + locateFrames`,
      ours: whole,
      unit: "ms/op",
      goals: [goal("< 10 ms", whole < 10)],
      note: `${FRAME_COUNT} frames, ${mb} MB file${kind === "encapsulated" ? `, ${FRAME_COUNT * FRAGMENTS_PER_FRAME} fragments, no BOT, frames found by ${located.indexSource}` : ""}`,
    },
    { name: `Frame locator, ${label}: locateFrames alone`, ours: locate, unit: "ms/op", goals: [goal("< 10 ms", locate < 10)] },
  ];
}

export const dicomCoreSuite: Suite = {
  name: "DICOM core",
  run(context) {
    const rows: BenchRow[] = [];
    const api = loadDcmjs();

    const ct = makeCtInstance();
    context.log(`generated CT: ${ct.file.length.toLocaleString("en-US")} bytes, ${ct.attributes} attributes (incl. sequence items)`);
    const generated = headerToJsonRow(
      context,
      api,
      "Header parse + DICOM JSON, 512×512 CT",
      ct.file,
      (json) => checkOurCtJson(json, ct),
      (json) => checkDcmjsJson(json, { studyUid: STUDY_UID, rows: 512, patientId: "VX-0012345" }),
    );
    const perSecond = 1e6 / generated.ours;
    generated.row.goals = [goal("≥ 3× dcmjs", (generated.row.ratio ?? 0) >= 3), goal("≥ 2,000 instances/s", perSecond >= 2000)];
    generated.row.note = `${ct.attributes} attributes, ${generated.row.note}, ${(ct.file.length / 1024).toFixed(0)} KiB; ${Math.round(perSecond).toLocaleString("en-US")} instances/s on one core`;
    rows.push(generated.row);
    context.log(`${generated.row.name}: ours ${generated.ours.toFixed(1)} µs, dcmjs ${generated.peer.toFixed(1)} µs`);

    if (existsSync(CT_SMALL)) {
      const file = readFileSync(CT_SMALL);
      const read = readDicom(file);
      if (read.error) throw read.error;
      const topLevel = read.dataset.elements().filter((el) => el.tag >= 0x00030000).length;
      const studyUid = JSON.parse(oursToJson(file))["0020000D"]?.Value?.[0];
      const small = headerToJsonRow(
        context,
        api,
        "Header parse + DICOM JSON, pydicom CT_small.dcm",
        file,
        (json) => {
          const parsed = JSON.parse(json) as DicomJsonDataset;
          check(Object.keys(parsed).length === topLevel, `CT_small: ${Object.keys(parsed).length} attributes, expected ${topLevel}`);
          check(parsed["7FE00010"]?.BulkDataURI === "bulk", "CT_small: PixelData should be a BulkDataURI");
        },
        (json) => {
          const natural = JSON.parse(json) as Record<string, unknown>;
          check(typeof studyUid === "string" && natural["StudyInstanceUID"] === studyUid, "CT_small: StudyInstanceUID ours vs dcmjs");
          check(natural["Rows"] === 128, "CT_small: dcmjs Rows");
        },
      );
      small.row.note = `real 128×128 CT header (${topLevel} top-level attributes), ${small.row.note}; informative, no goal`;
      rows.push(small.row);
      context.log(`${small.row.name}: ours ${small.ours.toFixed(1)} µs, dcmjs ${small.peer.toFixed(1)} µs`);
    } else {
      context.log(`${CT_SMALL} not found (Debian python3-pydicom): real-file row skipped`);
    }

    rows.push(...frameRows(context, "1,000-frame encapsulated, no BOT", makeEncapsulatedInstance(), "encapsulated"));
    rows.push(...frameRows(context, "1,000-frame native", makeNativeInstance(), "native"));
    return rows;
  },
};

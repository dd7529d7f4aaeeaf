/** A DICOM tag as an unsigned 32-bit number: (group << 16) | element. */
export type Tag = number;

export const makeTag = (group: number, element: number): Tag => ((group << 16) | element) >>> 0;
export const tagGroup = (tag: Tag): number => tag >>> 16;
export const tagElement = (tag: Tag): number => tag & 0xffff;

/** "0008103E": the 8 upper-case hex digit form used as DICOM JSON keys (PS3.18 F.2.1.1). */
export function tagToHex(tag: Tag): string {
  return tag.toString(16).toUpperCase().padStart(8, "0");
}

/** Parses "0008103E", "0008,103E" or "(0008,103E)"; undefined when it is not a tag. */
export function parseTagHex(text: string): Tag | undefined {
  const hex = text.replace(/[(),\s]/g, "");
  if (!/^[0-9a-fA-F]{8}$/.test(hex)) return undefined;
  return Number.parseInt(hex, 16) >>> 0;
}

/** Private data elements live in odd groups (PS3.5 §7.8); groups 0001, 0003, 0005, 0007 and FFFF are not valid private groups. */
export const isPrivateTag = (tag: Tag): boolean => {
  const group = tagGroup(tag);
  return (group & 1) === 1 && group > 0x0008 && group !== 0xffff;
};

/** (gggg,0010-00FF): reserves a block of private elements for a creator. */
export const isPrivateCreatorTag = (tag: Tag): boolean => {
  const el = tagElement(tag);
  return isPrivateTag(tag) && el >= 0x0010 && el <= 0x00ff;
};

/** Tag of the private creator element that owns a private data element, e.g. (0019,10xx) → (0019,0010). */
export const privateCreatorTagOf = (tag: Tag): Tag => makeTag(tagGroup(tag), tagElement(tag) >>> 8);

export const Tags = {
  FileMetaInformationGroupLength: 0x00020000,
  FileMetaInformationVersion: 0x00020001,
  MediaStorageSOPClassUID: 0x00020002,
  MediaStorageSOPInstanceUID: 0x00020003,
  TransferSyntaxUID: 0x00020010,
  ImplementationClassUID: 0x00020012,
  ImplementationVersionName: 0x00020013,
  SourceApplicationEntityTitle: 0x00020016,
  SpecificCharacterSet: 0x00080005,
  SOPClassUID: 0x00080016,
  SOPInstanceUID: 0x00080018,
  Modality: 0x00080060,
  StudyInstanceUID: 0x0020000d,
  SeriesInstanceUID: 0x0020000e,
  SamplesPerPixel: 0x00280002,
  PhotometricInterpretation: 0x00280004,
  PlanarConfiguration: 0x00280006,
  NumberOfFrames: 0x00280008,
  Rows: 0x00280010,
  Columns: 0x00280011,
  BitsAllocated: 0x00280100,
  BitsStored: 0x00280101,
  HighBit: 0x00280102,
  PixelRepresentation: 0x00280103,
  ExtendedOffsetTable: 0x7fe00001,
  ExtendedOffsetTableLengths: 0x7fe00002,
  FloatPixelData: 0x7fe00008,
  DoubleFloatPixelData: 0x7fe00009,
  PixelData: 0x7fe00010,
  Item: 0xfffee000,
  ItemDelimitationItem: 0xfffee00d,
  SequenceDelimitationItem: 0xfffee0dd,
} as const;

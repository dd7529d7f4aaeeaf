/** The DICOM core: read, write, convert. Everything above this layer imports from here. */
export { Dataset, type Element, type EncapsulatedPixelData, type Fragment } from "./dataset.js";
export { type DictionaryEntry, keywordOf, lookupPrivateTag, lookupTag, tagForKeyword } from "./dictionary.js";
export { swapBytesForVr } from "./byte-order.js";
export { DicomError, type DicomErrorCode } from "./errors.js";
export { type FrameLocation, frameBytes, type LocatedFrames, locateFrames, type PixelLayout, pixelLayout } from "./frames.js";
export { type BulkDataContext, type BulkDataPolicy, datasetToJson, type ToJsonOptions, thresholdBulkDataPolicy } from "./json.js";
export type { DicomJsonAttribute, DicomJsonDataset, JsonValue, PersonNameJson } from "./json-model.js";
export { type FromJsonOptions, type FromJsonResult, jsonToDataset } from "./json-to-dataset.js";
export { type ReadOptions, type ReadResult, readDicom, readDicomStrict } from "./reader.js";
export { makeTag, parseTagHex, type Tag, Tags, tagToHex } from "./tag.js";
export { lookupTransferSyntax, type TransferSyntax, TransferSyntaxUids } from "./transfer-syntax.js";
export { generateUid, isValidUid, uidProblem } from "./uid.js";
export { binaryNumbers, firstInteger, firstString, stringValues } from "./values.js";
export type { Vr } from "./vr.js";
export { encapsulateFrames, writeDataset, writePart10 } from "./writer.js";
export { datasetsToXmlDocuments, datasetToXml } from "./xml.js";

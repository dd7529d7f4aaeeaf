/** The DICOM core: read, write, convert. Everything above this layer imports from here. */
export { Dataset, type Element, type EncapsulatedPixelData, type Fragment } from "./dataset.js";
export { lookupTag, lookupPrivateTag, tagForKeyword, keywordOf, type DictionaryEntry } from "./dictionary.js";
export { DicomError, type DicomErrorCode } from "./errors.js";
export { locateFrames, frameBytes, pixelLayout, type FrameLocation, type LocatedFrames, type PixelLayout } from "./frames.js";
export { datasetToJson, thresholdBulkDataPolicy, type BulkDataPolicy, type BulkDataContext, type ToJsonOptions } from "./json.js";
export type { DicomJsonDataset, DicomJsonAttribute, PersonNameJson, JsonValue } from "./json-model.js";
export { jsonToDataset, type FromJsonOptions, type FromJsonResult } from "./json-to-dataset.js";
export { readDicom, readDicomStrict, type ReadOptions, type ReadResult } from "./reader.js";
export { Tags, tagToHex, parseTagHex, makeTag, type Tag } from "./tag.js";
export { lookupTransferSyntax, TransferSyntaxUids, type TransferSyntax } from "./transfer-syntax.js";
export { generateUid, isValidUid, uidProblem } from "./uid.js";
export { stringValues, firstString, firstInteger, binaryNumbers } from "./values.js";
export type { Vr } from "./vr.js";
export { writePart10, writeDataset, encapsulateFrames } from "./writer.js";
export { datasetToXml, datasetsToXmlDocuments } from "./xml.js";

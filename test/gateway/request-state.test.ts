import assert from "node:assert/strict";
import { test } from "node:test";
import { classifyRequest } from "../../src/gateway/request-state.js";

test("classifyRequest names the behaviour and target of every DICOMweb route", () => {
  const cases: Array<[string, string, ReturnType<typeof classifyRequest>]> = [
    ["GET", "/studies", { behaviour: "search", studyUid: undefined, seriesUid: undefined, sopUid: undefined }],
    ["GET", "/series?Modality=CT", { behaviour: "search" }],
    ["GET", "/instances", { behaviour: "search" }],
    ["GET", "/studies/1.2/series", { behaviour: "search", studyUid: "1.2", seriesUid: undefined, sopUid: undefined }],
    ["GET", "/studies/1.2/instances", { behaviour: "search", studyUid: "1.2", seriesUid: undefined, sopUid: undefined }],
    ["GET", "/studies/1.2/series/3.4/instances", { behaviour: "search", studyUid: "1.2", seriesUid: "3.4", sopUid: undefined }],
    ["GET", "/studies/1.2", { behaviour: "retrieve", studyUid: "1.2", seriesUid: undefined, sopUid: undefined }],
    ["GET", "/studies/1.2/metadata", { behaviour: "retrieve", studyUid: "1.2", seriesUid: undefined, sopUid: undefined }],
    [
      "GET",
      "/studies/1.2/series/3.4/instances/5.6/frames/1,2",
      { behaviour: "retrieve", studyUid: "1.2", seriesUid: "3.4", sopUid: "5.6" },
    ],
    [
      "GET",
      "/studies/1.2/series/3.4/instances/5.6/bulkdata/7FE00010",
      { behaviour: "retrieve", studyUid: "1.2", seriesUid: "3.4", sopUid: "5.6" },
    ],
    ["GET", "/studies/1.2/series/3.4/rendered", { behaviour: "render", studyUid: "1.2", seriesUid: "3.4", sopUid: undefined }],
    [
      "GET",
      "/studies/1.2/series/3.4/instances/5.6/frames/3/thumbnail",
      { behaviour: "render", studyUid: "1.2", seriesUid: "3.4", sopUid: "5.6" },
    ],
    ["POST", "/studies", { behaviour: "store", studyUid: undefined, seriesUid: undefined, sopUid: undefined }],
    ["POST", "/studies/1.2", { behaviour: "store", studyUid: "1.2", seriesUid: undefined, sopUid: undefined }],
    ["DELETE", "/studies/1.2/series/3.4", { behaviour: "delete", studyUid: "1.2", seriesUid: "3.4", sopUid: undefined }],
    ["POST", "/studies/1.2/series/3.4", undefined],
    ["DELETE", "/studies", undefined],
    ["GET", "/ohif", undefined],
    ["PUT", "/studies/1.2", undefined],
  ];
  for (const [method, path, expected] of cases) {
    assert.deepEqual(classifyRequest(method, path), expected, `${method} ${path}`);
  }
});

test("classifyRequest decodes percent-escapes as the router does, so an encoded path cannot dodge a policy", () => {
  assert.deepEqual(classifyRequest("GET", "/%73tudies"), {
    behaviour: "search",
    studyUid: undefined,
    seriesUid: undefined,
    sopUid: undefined,
  });
  assert.equal(classifyRequest("GET", "/studies/1.2/series/3.4/%72endered")?.behaviour, "render");
  assert.equal(classifyRequest("GET", "/studies/1.2/%ZZ")?.behaviour, "retrieve", "a malformed escape is left as is");
});

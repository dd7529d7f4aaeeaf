/**
 * PS3.18 §8.3.5 rendered query parameters: what parses, what is a 400 (with a reason), and the
 * cache key (equal for equal renderings, different for different ones).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  DEFAULT_JPEG_QUALITY,
  parseRenderParams,
  parseThumbnailParams,
  RenderParamError,
  renderCacheKey,
  THUMBNAIL_SIZE,
  thumbnailParams,
} from "../../src/codec/render-params.js";

const parse = (query: string) => parseRenderParams(new URLSearchParams(query));
const rejects = (query: string, parameter: string, reason: RegExp, thumbnail = false) => {
  assert.throws(
    () => (thumbnail ? parseThumbnailParams(new URLSearchParams(query)) : parse(query)),
    (e: unknown) => {
      assert.ok(e instanceof RenderParamError, `${query}: ${String(e)}`);
      assert.equal(e.status, 400);
      assert.equal(e.parameter, parameter);
      assert.match(e.reason, reason);
      return true;
    },
    query,
  );
};

test("no parameters: no window, no viewport, JPEG quality 90", () => {
  const p = parse("");
  assert.equal(p.window, undefined);
  assert.equal(p.viewport, undefined);
  assert.equal(p.quality, DEFAULT_JPEG_QUALITY);
  assert.equal(p.qualityGiven, false);
  assert.deepEqual(p.warnings, []);
  assert.equal(p.cacheKey, "r1;q=90");
});

test("window: center,width,function with the three PS3.3 functions", () => {
  assert.deepEqual(parse("window=40,400,linear").window, { center: 40, width: 400, function: "linear" });
  assert.deepEqual(parse("window=-600.5,1500,LINEAR-EXACT").window, { center: -600.5, width: 1500, function: "linear-exact" });
  assert.deepEqual(parse("window=1e3,2.5e2,sigmoid").window, { center: 1000, width: 250, function: "sigmoid" });
  assert.deepEqual(parse("window=0,0.5,linear-exact").window, { center: 0, width: 0.5, function: "linear-exact" });
  rejects("window=40,400", "window", /3 values/);
  rejects("window=40,400,linear,x", "window", /3 values/);
  rejects("window=,400,linear", "window", /center "" is not a decimal/);
  rejects("window=40,abc,linear", "window", /width "abc"/);
  rejects("window=40,400,gamma", "window", /linear, linear-exact or sigmoid/);
  rejects("window=40,0.5,linear", "window", /at least 1 for linear/);
  rejects("window=40,0,sigmoid", "window", /greater than 0/);
  rejects("window=40,-1,linear-exact", "window", /greater than 0/);
  rejects("window=Infinity,400,linear", "window", /not a decimal/);
  rejects("window=1e999,400,linear", "window", /out of range/);
});

test("viewport: vw,vh alone, with a source region, elided values and negative (flipping) sizes", () => {
  assert.deepEqual(parse("viewport=512,256").viewport, {
    vw: 512,
    vh: 256,
    sx: 0,
    sy: 0,
    flipX: false,
    flipY: false,
    letterbox: true,
    enlarge: true,
  });
  const region = parse("viewport=200,100,10.4,20.6,-100,50").viewport;
  assert.deepEqual(region, {
    vw: 200,
    vh: 100,
    sx: 10,
    sy: 21,
    sw: 100,
    sh: 50,
    flipX: true,
    flipY: false,
    letterbox: true,
    enlarge: true,
  });
  // PS3.18's own example: sx and sy elided, the commas stay.
  const elided = parse("viewport=512,512,,,512,512").viewport;
  assert.equal(elided?.sx, 0);
  assert.equal(elided?.sy, 0);
  assert.equal(elided?.sw, 512);
  const flipY = parse("viewport=64,64,,,,-32").viewport;
  assert.equal(flipY?.sw, undefined, "sw elided: to the right edge");
  assert.equal(flipY?.sh, 32);
  assert.equal(flipY?.flipY, true);
  // Absolute values for sx and sy (the standard says so).
  const abs = parse("viewport=8,8,-3,-4,,").viewport;
  assert.deepEqual([abs?.sx, abs?.sy, abs?.flipX, abs?.flipY], [3, 4, false, false]);
  // Trailing values elided with their commas ("the trailing commas shall be omitted").
  assert.deepEqual(parse("viewport=8,8,2,3").viewport, parse("viewport=8,8,2,3,,").viewport);
  assert.deepEqual(parse("viewport=8,8,2").viewport?.sx, 2);
  assert.equal(parse("viewport=8,8,,,-5").viewport?.flipX, true);
});

test("viewport: malformed values are a 400 with the reason", () => {
  rejects("viewport=512", "viewport", /must be vw,vh\[,sx,sy,sw,sh\]/);
  rejects("viewport=1,2,3,4,5,6,7", "viewport", /must be vw,vh\[,sx,sy,sw,sh\]/);
  rejects("viewport=0,10", "viewport", /vw must be at least 1/);
  rejects("viewport=10,-5", "viewport", /vh "-5" must be a positive integer/);
  rejects("viewport=10.5,10", "viewport", /vw "10.5" must be a positive integer/);
  rejects("viewport=,10", "viewport", /vw "" must be a positive integer/);
  rejects("viewport=100000,10", "viewport", /larger than the 8192 supported/);
  rejects("viewport=10,10,a,0,5,5", "viewport", /sx "a" is not a decimal/);
  rejects("viewport=10,10,0,0,0,5", "viewport", /sw "0" selects no column/);
  rejects("viewport=10,10,0,0,5,0.2", "viewport", /sh "0.2" selects no row/);
});

test("quality: an integer from 1 to 100", () => {
  assert.equal(parse("quality=1").quality, 1);
  assert.equal(parse("quality=100").quality, 100);
  assert.equal(parse("quality=55").qualityGiven, true);
  for (const bad of ["0", "101", "", "50.5", "-5", "abc", "1e2"]) rejects(`quality=${bad}`, "quality", /integer from 1 to 100/);
});

test("annotation: keywords accepted and ignored with the standard's Warning text; non-keywords are a 400", () => {
  const p = parse("annotation=patient,technique");
  assert.deepEqual(p.annotation, ["patient", "technique"]);
  assert.deepEqual(p.warnings, ["The following annotation values are not supported: patient,technique"]);
  assert.deepEqual(parse("annotation=Patient,vendorthing").warnings, [
    "The following annotation values are not supported: patient,vendorthing",
  ]);
  assert.equal(parse("annotation=patient").cacheKey, parse("").cacheKey, "nothing is burned in: same image");
  rejects("annotation=", "annotation", /comma-separated list of keywords/);
  rejects("annotation=patient,", "annotation", /keywords/);
  rejects("annotation=12", "annotation", /keywords/);
  rejects("annotation=pa tient", "annotation", /keywords/);
});

test("charset: character sets Node can decode, by weight; unknown ones are a 400; they do not change the image", () => {
  assert.deepEqual(parse("charset=iso-8859-1;q=0.5,UTF-8").charsets, ["utf-8", "windows-1252"]);
  assert.deepEqual(parse("charset=utf-8&charset=latin2").charsets, ["utf-8", "iso-8859-2"], "charset may repeat");
  assert.deepEqual(parse("charset=utf-8;q=0").charsets, []);
  assert.equal(parse("charset=utf-8").cacheKey, parse("").cacheKey);
  rejects("charset=klingon", "charset", /not a supported character set/);
  rejects("charset=*", "charset", /no wildcard/);
  rejects("charset=utf-8;q=2", "charset", /not a weight/);
});

test("iccprofile: no/yes/srgb; the other color spaces are not supported", () => {
  assert.equal(parse("iccprofile=no").iccProfile, "no");
  assert.equal(parse("iccprofile=srgb").iccProfile, "srgb");
  assert.equal(parse("iccprofile=yes").cacheKey, parse("iccprofile=srgb").cacheKey);
  assert.equal(parse("iccprofile=no").cacheKey, parse("").cacheKey);
  rejects("iccprofile=adobergb", "iccprofile", /not supported/);
  rejects("iccprofile=cmyk", "iccprofile", /must be no, yes, srgb/);
});

test("a parameter given twice is a 400; parameters the parser does not own are left to the route", () => {
  rejects("quality=50&quality=60", "quality", /given 2 times/);
  rejects("window=1,2,linear&window=1,2,linear", "window", /given 2 times/);
  const p = parseRenderParams([
    ["accept", "image/png"],
    ["frame", "3"],
    ["quality", "70"],
  ]);
  assert.equal(p.quality, 70);
});

test("cache key: one key for one rendering, different keys for different renderings", () => {
  const same = [
    "window=40,400,linear&viewport=100,100",
    "viewport=100,100&window=40.0,4e2,LINEAR",
    "window=+40,400.000,linear&viewport=100,100,,,,",
  ];
  const keys = same.map((q) => parse(q).cacheKey);
  assert.equal(new Set(keys).size, 1, keys.join(" | "));
  const different = [
    "",
    "window=40,400,linear",
    "window=40,400,linear-exact",
    "window=40,401,linear",
    "viewport=100,100",
    "viewport=100,101",
    "viewport=100,100,0,0,50,50",
    "viewport=100,100,0,0,-50,50",
    "viewport=100,100,0,0,50,-50",
    "quality=80",
    "iccprofile=srgb",
  ];
  const all = different.map((q) => parse(q).cacheKey);
  assert.equal(new Set(all).size, different.length, all.join(" | "));
  // Quality only matters to JPEG.
  assert.notEqual(renderCacheKey(parse("quality=50"), "image/jpeg"), renderCacheKey(parse(""), "image/jpeg"));
  assert.equal(renderCacheKey(parse("quality=50"), "image/png"), renderCacheKey(parse(""), "image/png"));
  assert.notEqual(renderCacheKey(parse(""), "image/png"), renderCacheKey(parse(""), "image/gif"));
  assert.match(parse("").cacheKey, /^r\d+;/, "the renderer version is part of the key");
});

test("thumbnail: viewport vw,vh only; without it the image is fitted into 128×128, never enlarged", () => {
  const d = parseThumbnailParams(new URLSearchParams(""));
  assert.deepEqual(d.viewport, {
    vw: THUMBNAIL_SIZE,
    vh: THUMBNAIL_SIZE,
    sx: 0,
    sy: 0,
    flipX: false,
    flipY: false,
    letterbox: false,
    enlarge: false,
  });
  assert.equal(d.cacheKey, thumbnailParams().cacheKey);
  const v = parseThumbnailParams(new URLSearchParams("viewport=200,150&quality=5&window=1,2,linear"));
  assert.deepEqual([v.viewport?.vw, v.viewport?.vh, v.viewport?.letterbox, v.viewport?.enlarge], [200, 150, true, true]);
  assert.equal(v.window, undefined, "window is not a thumbnail parameter (the route decides about unknown ones)");
  assert.equal(v.quality, DEFAULT_JPEG_QUALITY);
  rejects("viewport=200,150,0,0,10,10", "viewport", /thumbnail viewport is vw,vh only/, true);
  rejects("viewport=200", "viewport", /must be vw,vh/, true);
  assert.notEqual(thumbnailParams().cacheKey, thumbnailParams({ vw: 128, vh: 128 }).cacheKey, "letterboxed 128×128 differs from fitted");
});

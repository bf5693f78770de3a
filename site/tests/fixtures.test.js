// The pure modules against answers written by the Python reference (tests/js_fixtures.py).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { gradcamFromOutputs, overlayHeatmap, parseColormap, softmax, upsampleCam } from '../js/gradcam.js';
import { applyOffsets, nms, pnetCandidates, square } from '../js/mtcnn.js';
import { normalizeCrops } from '../js/preprocess.js';

const fixtures = JSON.parse(readFileSync(new URL('./fixtures/python.json', import.meta.url), 'utf8'));

function image(pixels) {
  const height = pixels.length;
  const width = pixels[0].length;
  return { width, height, data: Uint8ClampedArray.from(pixels.flat(2)) };
}

function assertClose(actual, expected, tolerance, what) {
  assert.equal(actual.length, expected.length, `${what}: length`);
  let worst = 0;
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
  assert.ok(worst <= tolerance, `${what}: worst difference ${worst} > ${tolerance}`);
}

test('normalizeCrops equals normalize_crops exactly', () => {
  const { crops, preprocessing, expected } = fixtures.normalize;
  assert.deepEqual(Array.from(normalizeCrops(crops.map(image), preprocessing).data), expected);
});

test('softmax is within float32 rounding of Python', () => {
  const { logits, dims, expected } = fixtures.softmax;
  assertClose(softmax({ data: Float32Array.from(logits), dims }), expected, 1e-6, 'softmax');
});

test('Grad-CAM maps and their upsampling follow gradcam_from_outputs and upsample_cam', () => {
  const g = fixtures.gradcam;
  const coarse = gradcamFromOutputs(Float32Array.from(g.activations), Float32Array.from(g.weights), g.dims, g.class_index);
  assertClose(coarse.data, g.coarse, 1e-6, 'coarse');
  assertClose(upsampleCam(coarse, g.size).data, g.upsampled, 1e-5, 'upsampled');
});

test('the colormap and the overlay follow jet_colormap and overlay_heatmap', () => {
  const c = fixtures.colormap;
  const table = parseColormap(c.hex);
  assert.equal(table.length, 256 * 3);
  const overlay = overlayHeatmap(image(c.crop), Float32Array.from(c.cam), table, c.image_weight);
  assertClose(overlay.data, c.overlay, 1, 'overlay');
});

test('P-Net box decoding, offsets and squaring equal Python exactly', () => {
  const p = fixtures.pnet;
  const [, rows, cols] = [2, 5, 6];
  const found = pnetCandidates({ data: Float32Array.from(p.offsets), dims: [1, 4, rows, cols] },
    { data: Float32Array.from(p.probabilities), dims: [1, 2, rows, cols] }, p.scale, p.threshold);
  assert.deepEqual(found.boxes, p.boxes);
  assert.deepEqual(found.scores, p.scores);
  assert.deepEqual(found.offsets, p.candidate_offsets);
  assert.deepEqual(applyOffsets(found.boxes, found.offsets, false), p.applied.False);
  assert.deepEqual(applyOffsets(found.boxes, found.offsets, true), p.applied.True);
  assert.deepEqual(square(found.boxes), p.squared);
});

test('non-maximum suppression keeps the boxes Python keeps, ties included', () => {
  const { boxes, scores, threshold, cases } = fixtures.nms;
  const boxes32 = boxes.map((box) => box.map(Math.fround));
  for (const { keep, ...options } of cases) {
    assert.deepEqual(nms(boxes32, scores, threshold, options), keep, JSON.stringify(options));
  }
});

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { analysePhoto, classifyFaces, overlays, preparePhoto } from '../js/pipeline.js';

const manifest = {
  classes: ['covered', 'incorrect', 'uncovered'],
  reasons: ['nose', 'chin', 'nose_and_mouth'],
  classifier: {
    target_layers: ['block8'],
    webcam: { target_layers: ['block8'] },
    preprocessing: { size: 4, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] },
  },
  face_detector: { min_face_size: 20, thresholds: [0.6, 0.7, 0.7], factor: 0.709, padding: 0.3, fallback_threshold: null },
  face_crop: { framing: { center_dx: 0, center_dy: 0, side: 1.5 } },
  drawing: { colormap: new Array(256).fill('#ff0000'), image_weight: 0.5 },
};

/** A classifier that always finds "incorrect", reason "chin", with one channel of 2 x 2 maps. */
function fakeClassifier(seen) {
  return async (name, data, dims) => {
    seen.push({ name, dims });
    const n = dims[0];
    const repeat = (row) => Float32Array.from({ length: n * row.length }, (_, i) => row[i % row.length]);
    return {
      logits: { data: repeat([0, 2, 1]), dims: [n, 3] },
      reason_logits: { data: repeat([0, 3, 0]), dims: [n, 3] },
      block8_activations: { data: repeat([1, 2, 3, 4]), dims: [n, 1, 2, 2] },
      block8_weights: { data: repeat([1, -1, 0.5]), dims: [n, 3, 1] },
    };
  };
}

test('wholeImage mode classifies the photo itself as one face', async () => {
  const seen = [];
  const image = { width: 6, height: 3, data: new Uint8ClampedArray(6 * 3 * 4).fill(128) };
  const [face, ...others] = await analysePhoto(image, { manifest, runNet: fakeClassifier(seen), wholeImage: true });
  assert.equal(others.length, 0);
  assert.deepEqual(seen, [{ name: 'classifier', dims: [1, 3, 4, 4] }]);
  assert.deepEqual(face.box, [0, 0, 6, 3]);
  assert.deepEqual(face.crop_box, [0, 0, 6, 3]);
  assert.deepEqual(face.landmarks, []);
  assert.equal(face.class, 'incorrect');
  assert.equal(face.reason, 'chin');
  const p = face.probabilities;
  assert.ok(Math.abs(p.covered + p.incorrect + p.uncovered - 1) < 1e-6 && p.incorrect > p.uncovered);
  assert.deepEqual(face.heatmaps.block8.dims, [3, 2, 2]);
  // Class 0 weighs the channel +1: the map rises to 1; class 1 weighs it -1: all zero.
  assert.deepEqual(Array.from(face.heatmaps.block8.data.subarray(0, 4)).map((v) => Math.round(v * 3)), [0, 1, 2, 3]);
  assert.deepEqual(Array.from(face.heatmaps.block8.data.subarray(4, 8)), [0, 0, 0, 0]);
  assert.deepEqual([face.crop.width, face.crop.height, face.crop.data.length], [4, 4, 48]);
  const { block8 } = overlays(face, manifest);
  assert.deepEqual([block8.width, block8.height], [4, 4]);
});

test('a photo without faces gives no result and never runs the classifier', async () => {
  const seen = [];
  const runNet = async (name, data, dims) => {
    if (name === 'classifier') return fakeClassifier(seen)(name, data, dims);
    const cells = (Math.floor((dims[2] - 3) / 2) - 3) * (Math.floor((dims[3] - 3) / 2) - 3);
    return {
      box_offsets: { data: new Float32Array(4 * cells), dims: [1, 4, cells, 1] },
      probabilities: { data: new Float32Array(2 * cells), dims: [1, 2, cells, 1] },
    };
  };
  const image = { width: 30, height: 30, data: new Uint8ClampedArray(30 * 30 * 3) };
  assert.deepEqual(await analysePhoto(image, { manifest, runNet }), []);
  assert.deepEqual(seen, []);
});

test('preparePhoto drops alpha, shrinks to the longest side and refuses huge photos', () => {
  const image = { width: 300, height: 100, data: new Uint8ClampedArray(300 * 100 * 4) };
  const photo = preparePhoto(image, { max_side: 100, max_pixels: 1e6 });
  assert.deepEqual([photo.width, photo.height, photo.data.length], [100, 33, 100 * 33 * 3]);
  assert.throws(() => preparePhoto(image, { max_side: 100, max_pixels: 20000 }), /photo too large: 300 x 100/);
});

test('live classification runs the live graph on all faces at once', async () => {
  const seen = [];
  const image = { width: 20, height: 20, data: new Uint8ClampedArray(20 * 20 * 3).fill(90) };
  const boxes = [[2, 2, 8, 8], [10, 10, 18, 18]];
  const faces = await classifyFaces(image, boxes.map((box) => ({ box, score: null, landmarks: [] })),
    { manifest, runNet: fakeClassifier(seen), live: true });
  assert.deepEqual(seen, [{ name: 'classifier_live', dims: [2, 3, 4, 4] }]);
  assert.deepEqual(faces.map((face) => [face.class, Object.keys(face.heatmaps)]), [['incorrect', ['block8']], ['incorrect', ['block8']]]);
  assert.deepEqual(faces.map((face) => face.box), boxes);
});

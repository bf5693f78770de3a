import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  applyOffsets, createOrtRunner, cropBounds, detectFaces, findFaces, nms, padPhoto, wholePhotoBoxes, placeLandmarks, pnetCandidates, pyramidLevelSize,
  pyramidScales, square,
} from '../js/mtcnn.js';

const close = (actual, expected, tolerance = 1e-5) => {
  assert.equal(actual.length, expected.length);
  actual.forEach((v, i) => assert.ok(Math.abs(v - expected[i]) <= tolerance, `${actual} != ${expected}`));
};

test('nms keeps the best box and drops those overlapping it beyond the threshold', () => {
  const boxes = [[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]];
  const scores = [0.9, 0.8, 0.95];
  // IoU of the first two: 81 / 119 = 0.68.
  assert.deepEqual(nms(boxes, scores, 0.5), [2, 0]);
  assert.deepEqual(nms(boxes, scores, 0.7), [2, 0, 1]);
  assert.deepEqual(nms([], [], 0.5), []);
});

test('nms breaks ties in score by position, first or last', () => {
  const boxes = [[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]];
  const scores = [0.9, 0.9, 0.9];
  assert.deepEqual(nms(boxes, scores, 0.5), [0, 2]);
  assert.deepEqual(nms(boxes, scores, 0.5, { ties: 'last' }), [2, 1]);
});

test('nms "min" overlap drops a box inside a better one', () => {
  const boxes = [[0, 0, 9, 9], [2, 2, 5, 5]]; // inclusive areas 100 and 16, intersection 16
  const scores = [0.9, 0.8];
  assert.deepEqual(nms(boxes, scores, 0.7, { inclusive: true }), [0, 1]); // IoU 0.16
  assert.deepEqual(nms(boxes, scores, 0.7, { overlap: 'min', inclusive: true }), [0]); // 16 / 16
});

test('pyramid scales shrink by the factor while the shorter side covers 12 px', () => {
  const scales = pyramidScales(100, 200, 20, 0.709);
  close(scales, [0.6, 0.6 * 0.709, 0.6 * 0.709 ** 2, 0.6 * 0.709 ** 3, 0.6 * 0.709 ** 4], 1e-12);
  assert.deepEqual(pyramidLevelSize(100, 200, 0.6), [61, 121]);
  assert.deepEqual(pyramidScales(10, 10, 20, 0.709), []);
});

test('pnetCandidates maps cells at or above the float32 threshold to 12 px windows', () => {
  const probabilities = {
    dims: [1, 2, 2, 3],
    data: Float32Array.from([0, 0, 0, 0, 0, 0, 0.1, 0.7, 0.6, 0.59, 0.9, 0.2]),
  };
  const boxOffsets = { dims: [1, 4, 2, 3], data: Float32Array.from({ length: 24 }, (_, i) => i) };
  const { boxes, scores, offsets } = pnetCandidates(boxOffsets, probabilities, 0.5, 0.6);
  // Cells (x 1, y 0), (2, 0) and (1, 1), row-major; 0.6 passes: numpy compares in float32.
  assert.deepEqual(boxes, [[6, 2, 28, 24], [10, 2, 32, 24], [6, 6, 28, 28]]);
  close(scores, [0.7, 0.6, 0.9]);
  assert.deepEqual(offsets, [[1, 7, 13, 19], [2, 8, 14, 20], [4, 10, 16, 22]]);
});

test('applyOffsets moves edges by fractions of the size, exclusive or inclusive', () => {
  const boxes = [[0, 0, 10, 20]];
  const offsets = [[0.1, 0.1, -0.1, 0.5]];
  close(applyOffsets(boxes, offsets, false)[0], [1, 2, 9, 30]);
  close(applyOffsets(boxes, offsets, true)[0], [1.1, 2.1, 8.9, 30.5]);
});

test('square grows a box on its longer side around its centre', () => {
  assert.deepEqual(square([[0, 0, 10, 20], [5, 5, 9, 7]]), [[-5, 0, 15, 20], [5, 4, 9, 8]]);
});

test('placeLandmarks maps box fractions to pixels (1-based box, inclusive size)', () => {
  const landmarks = [[0.5, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25, 1]];
  const [points] = placeLandmarks([[0, 0, 9, 19]], landmarks);
  assert.deepEqual(points[0], [4, 4]);
  assert.deepEqual(points[4], [4, 19]);
});

test('cropBounds truncates, treats boxes as 1-based and clips them to the image', () => {
  assert.deepEqual(cropBounds([[-3.7, 2.9, 50.2, 8.1]], 40, 30), [[0, 1, 40, 8]]);
});

test('detectFaces runs P-Net once per pyramid level and stops when nothing passes', async () => {
  const calls = [];
  const runNet = async (name, data, dims) => {
    calls.push({ name, dims, min: Math.min(...data), max: Math.max(...data) });
    const [, , h, w] = dims;
    const cells = (Math.floor((h - 3) / 2) - 3) * (Math.floor((w - 3) / 2) - 3);
    return {
      box_offsets: { data: new Float32Array(4 * cells), dims: [1, 4, cells, 1] },
      probabilities: { data: new Float32Array(2 * cells), dims: [1, 2, cells, 1] },
    };
  };
  const image = { width: 40, height: 30, data: new Uint8ClampedArray(40 * 30 * 4).fill(255) };
  const faces = await detectFaces(image, runNet, { min_face_size: 20, thresholds: [0.6, 0.7, 0.7], factor: 0.709 });
  assert.deepEqual(faces, []);
  assert.deepEqual(calls.map((c) => c.name), ['pnet', 'pnet']);
  assert.deepEqual(calls[0].dims, [1, 3, 19, 25]);
  // 255 normalises to (255 - 127.5) / 128.
  assert.equal(calls[0].max, 0.99609375);
});

test('padPhoto repeats the edge pixels round(padding * longer side) times on every side', () => {
  const image = { width: 3, height: 2, data: Uint8ClampedArray.from([1, 2, 3, 4, 5, 6].flatMap((v) => [v, v, v])) };
  const { image: padded, margin } = padPhoto(image, 0.34);
  assert.equal(margin, 1);
  assert.deepEqual([padded.width, padded.height], [5, 4]);
  const reds = Array.from({ length: 20 }, (_, i) => padded.data[i * 3]);
  assert.deepEqual(reds, [1, 1, 2, 3, 3, 1, 1, 2, 3, 3, 4, 4, 5, 6, 6, 4, 4, 5, 6, 6]);
  assert.equal(padPhoto(image, 0).image, image);
});

test('wholePhotoBoxes are centred squares of the shorter side, the longer side and their mean', () => {
  assert.deepEqual(wholePhotoBoxes(30, 50), [[10, 0, 40, 30], [0, -10, 50, 40], [5, -5, 45, 35]]);
  assert.deepEqual(wholePhotoBoxes(50, 30)[0], [0, 10, 30, 40]);
});

/** P-Net's outputs for an input of these dims with no face anywhere. */
function pnetFindingNothing([, , h, w]) {
  const cells = (Math.floor((h - 3) / 2) - 3) * (Math.floor((w - 3) / 2) - 3);
  return { box_offsets: { data: new Float32Array(4 * cells), dims: [1, 4, cells, 1] },
    probabilities: { data: new Float32Array(2 * cells), dims: [1, 2, cells, 1] } };
}

test('findFaces asks O-Net about the whole-photo squares when the cascade finds nothing', async () => {
  const calls = [];
  const runNet = async (name, data, dims) => {
    calls.push({ name, dims });
    if (name === 'pnet') return pnetFindingNothing(dims);
    const n = dims[0];
    const faceProbability = [0.6, 0.3, 0.3];
    return { box_offsets: { data: new Float32Array(4 * n), dims: [n, 4] },
      landmarks: { data: new Float32Array(10 * n).fill(0.5), dims: [n, 10] },
      probabilities: { data: Float32Array.from(faceProbability.flatMap((p) => [1 - p, p])), dims: [n, 2] } };
  };
  const image = { width: 40, height: 30, data: new Uint8ClampedArray(40 * 30 * 3).fill(90) };
  const settings = { min_face_size: 20, thresholds: [0.6, 0.7, 0.7], factor: 0.709, padding: 0.25, fallback_threshold: 0.5 };
  const [face, ...rest] = await findFaces(image, runNet, settings);
  assert.equal(rest.length, 0);
  assert.deepEqual(calls.at(-1), { name: 'onet', dims: [3, 3, 48, 48] });
  assert.deepEqual(face.box, [5, 0, 35, 30]);
  assert.equal(face.score, Math.fround(0.6));
  assert.deepEqual(await findFaces(image, runNet, { ...settings, fallback_threshold: 0.7 }), []);
  assert.deepEqual(await findFaces(image, runNet, { ...settings, fallback_threshold: null }), []);
});

test('findFaces takes the second look with its own R-Net and O-Net only where the stock nets find nothing', async () => {
  const calls = [];
  // P-Net finds no face; the whole-photo O-Net step says 0.6 to the stock O-Net, 0.9 to the second look's.
  const runNet = async (name, data, dims) => {
    calls.push(name);
    if (name === 'pnet') return pnetFindingNothing(dims);
    const n = dims[0];
    const p = name === 'onet_masked' ? 0.9 : 0.6;
    return { box_offsets: { data: new Float32Array(4 * n), dims: [n, 4] },
      landmarks: { data: new Float32Array(10 * n).fill(0.5), dims: [n, 10] },
      probabilities: { data: Float32Array.from({ length: 2 * n }, (_, k) => (k % 2 ? p : 1 - p)), dims: [n, 2] } };
  };
  const image = { width: 40, height: 30, data: new Uint8ClampedArray(40 * 30 * 3).fill(90) };
  const secondLook = { nets: { rnet: 'rnet_masked', onet: 'onet_masked' }, weights: 'w', when: 'w' };
  const settings = {
    min_face_size: 20, thresholds: [0.6, 0.7, 0.7], factor: 0.709, padding: 0.25, second_look: secondLook,
  };
  const [face] = await findFaces(image, runNet, { ...settings, fallback_threshold: 0.8 });
  assert.equal(face.score, Math.fround(0.9));
  assert.deepEqual(calls.filter((name) => name !== 'pnet'), ['onet', 'onet_masked']);
  calls.length = 0;
  const [stockFace] = await findFaces(image, runNet, { ...settings, fallback_threshold: 0.5 });
  assert.equal(stockFace.score, Math.fround(0.6));
  assert.deepEqual(calls.filter((name) => name !== 'pnet'), ['onet']);
});

test('createOrtRunner feeds the session input by name and returns plain tensors', async () => {
  class Tensor {
    constructor(type, data, dims) { Object.assign(this, { type, data, dims }); }
  }
  let feeds;
  const session = {
    inputNames: ['image'],
    run: async (given) => {
      feeds = given;
      return { probabilities: new Tensor('float32', Float32Array.of(1, 2), [1, 2]) };
    },
  };
  const runNet = createOrtRunner({ Tensor }, { rnet: session });
  const out = await runNet('rnet', Float32Array.of(0.5), [1, 1, 1, 1]);
  assert.equal(feeds.image.type, 'float32');
  assert.deepEqual(feeds.image.dims, [1, 1, 1, 1]);
  assert.deepEqual(out, { probabilities: { data: Float32Array.of(1, 2), dims: [1, 2] } });
  await assert.rejects(runNet('onet', new Float32Array(1), [1]), /no session for net "onet"/);
});

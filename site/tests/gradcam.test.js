import assert from 'node:assert/strict';
import { test } from 'node:test';

import { gradcamFromOutputs, overlayHeatmap, parseColormap, softmax, upsampleCam } from '../js/gradcam.js';

const close = (actual, expected, tolerance = 1e-6) => {
  assert.equal(actual.length, expected.length);
  Array.from(actual).forEach((v, i) => {
    assert.ok(Math.abs(v - expected[i]) <= tolerance, `${Array.from(actual)} != ${expected}`);
  });
};

test('softmax normalises each row, stable for large logits', () => {
  close(softmax({ data: Float32Array.from([0, Math.log(3), 1000, 1000]), dims: [2, 2] }), [0.25, 0.75, 0.5, 0.5]);
});

test('gradcamFromOutputs weights channels, applies ReLU and scales to [0, 1]', () => {
  // One image, two channels of 1 x 3: [1, 2, 3] and [3, 2, 1].
  const activations = Float32Array.from([1, 2, 3, 3, 2, 1]);
  const weights = Float32Array.from([1, 0, -1, 0, 0.5, 0.5]); // classes x channels
  const dims = [1, 2, 1, 3];
  const cam = gradcamFromOutputs(activations, weights, dims, 0);
  assert.deepEqual(cam.dims, [1, 1, 3]);
  close(cam.data, [0, 0.5, 1]);
  close(gradcamFromOutputs(activations, weights, dims, 1).data, [0, 0, 0]); // all negative
  close(gradcamFromOutputs(activations, weights, dims, 2).data, [0, 0, 0]); // flat
});

test('upsampleCam interpolates between pixel centres, clamped at the edges', () => {
  const fine = upsampleCam({ data: Float32Array.from([0, 1]), dims: [1, 1, 2] }, { width: 4, height: 2 });
  assert.deepEqual(fine.dims, [1, 2, 4]);
  close(fine.data, [0, 0.25, 0.75, 1, 0, 0.25, 0.75, 1]);
  assert.deepEqual(upsampleCam({ data: new Float32Array(4), dims: [1, 2, 2] }, 3).dims, [1, 3, 3]);
});

test('parseColormap reads "#rrggbb" entries', () => {
  assert.deepEqual(Array.from(parseColormap(['#000080', '#Ff00fF'])), [0, 0, 128, 255, 0, 255]);
  assert.throws(() => parseColormap(['#12345']), /entry 0/);
});

test('overlayHeatmap blends the coloured map and rescales to the brightest value', () => {
  const colormap = parseColormap(new Array(256).fill('#0000ff'));
  const crop = { width: 1, height: 1, data: Uint8ClampedArray.from([255, 0, 0]) };
  // 0.5 * blue + 0.5 * red = (0.5, 0, 0.5), rescaled by its maximum 0.5.
  assert.deepEqual(Array.from(overlayHeatmap(crop, Float32Array.of(1), colormap, 0.5).data), [255, 0, 255]);
  assert.throws(() => overlayHeatmap(crop, Float32Array.of(1, 1), colormap, 0.5), /2 values/);
});

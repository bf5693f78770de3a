import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  areaResize, cropBoxForFace, cropFace, reduce, resizeBilinear, roundHalfEven, rowPrefixSums, thumbnail, thumbnailSize, toPlanar,
  toRGB, toRGBA,
} from '../js/imaging.js';

const grey = (width, height, values) => ({
  width, height, data: Uint8ClampedArray.from(values.flatMap((v) => [v, v, v])),
});
const channel = (image, c = 0) => Array.from(image.data).filter((_, i) => i % 3 === c);

test('resizeBilinear matches values computed with Pillow 13', () => {
  // A 5 x 7 image to 3 x 2: the height loses more than twice the pixels the width does, so Pillow
  // runs the vertical pass first; horizontal first would give 124 instead of 123 at index 13.
  const image = { width: 5, height: 7, data: Uint8ClampedArray.from({ length: 105 }, (_, i) => (i * 37) % 256) };
  assert.deepEqual(Array.from(resizeBilinear(image, 3, 2).data),
    [108, 127, 136, 117, 111, 124, 137, 122, 110, 123, 142, 127, 140, 123, 147, 128, 137, 125]);
  // Enlarging a 2 x 2 image: corners kept, midpoints the rounded means.
  const tiny = { width: 2, height: 2, data: Uint8ClampedArray.from([0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 0, 255]) };
  assert.deepEqual(Array.from(resizeBilinear(tiny, 3, 3).data),
    [0, 0, 0, 128, 128, 128, 255, 255, 255, 128, 0, 0, 128, 64, 128, 128, 128, 255, 255, 0, 0, 128, 0, 128, 0, 0, 255]);
  assert.deepEqual(Array.from(resizeBilinear(tiny, 1, 1).data), [128, 64, 128]);
});

test('resizeBilinear halving an image matches Pillow 13, its zero-weight taps left out', () => {
  // At a scale of 2 every window's outermost taps get a coefficient of 0, at the edges too, where
  // the window is clipped to the image: leaving them out must not move any sum.
  const image = { width: 8, height: 6, data: Uint8ClampedArray.from({ length: 144 }, (_, i) => (i * 37) % 256) };
  assert.deepEqual(Array.from(resizeBilinear(image, 4, 3).data),
    [128, 87, 119, 144, 126, 95, 110, 147, 129, 94, 115, 152, 160, 128, 106, 130, 163, 128, 96, 133, 166, 120,
      102, 139, 144, 134, 93, 116, 153, 130, 95, 119, 156, 146, 89, 126]);
  assert.deepEqual(Array.from(resizeBilinear(image, 3, 2).data),
    [145, 110, 112, 123, 147, 123, 100, 119, 151, 144, 143, 100, 105, 140, 152, 124, 99, 136]);
});

test('resizeBilinear to the same size copies', () => {
  const image = grey(2, 1, [7, 9]);
  const copy = resizeBilinear(image, 2, 1);
  assert.deepEqual(copy, image);
  assert.notEqual(copy.data, image.data);
});

test('reduce averages blocks with rounding, partial blocks over their own pixels', () => {
  const values = Array.from({ length: 30 }, (_, i) => (i * 11) % 256); // 6 x 5
  const reduced = reduce(grey(6, 5, values), 2, 2);
  assert.equal(reduced.width, 3);
  assert.equal(reduced.height, 3);
  // (0 + 11 + 66 + 77 + 2) >> 2 = 39; the last row averages one row of two: (8 + 19 + 1) >> 1 = 14.
  assert.deepEqual(channel(reduced), [39, 61, 83, 171, 193, 215, 14, 36, 58]);
});

test('thumbnailSize rounds as Pillow does', () => {
  assert.deepEqual(thumbnailSize(900, 500, 100), [100, 56]);
  assert.deepEqual(thumbnailSize(333, 777, 50), [21, 50]);
  assert.deepEqual(thumbnailSize(1281, 721, 1280), [1280, 720]);
  assert.deepEqual(thumbnailSize(1000, 1, 100), [100, 1]);
  assert.deepEqual(thumbnailSize(7, 1000, 10), [1, 10]);
  assert.equal(thumbnailSize(640, 480, 1280), null);
});

test('thumbnail leaves a fitting image alone and shrinks a larger one', () => {
  const small = grey(2, 2, [1, 2, 3, 4]);
  assert.equal(thumbnail(small, 10), small);
  const big = grey(8, 4, new Array(32).fill(200));
  const shrunk = thumbnail(big, 2);
  assert.deepEqual([shrunk.width, shrunk.height], [2, 1]);
  assert.deepEqual(Array.from(shrunk.data), [200, 200, 200, 200, 200, 200]);
});

test('roundHalfEven rounds halves to the even neighbour, as Python', () => {
  assert.deepEqual([0.5, 1.5, 2.5, 2.4999, -1.5, -2.5, 3.7].map(roundHalfEven), [0, 2, 2, 2, -2, -2, 4]);
});

test('cropBoxForFace centres a square of side * face size', () => {
  const box = [10, 20, 30, 60]; // face size (20 + 40) / 2 = 30, centre (20, 40)
  assert.deepEqual(cropBoxForFace(box, { center_dx: 0, center_dy: 0, side: 2 }), [-10, 10, 50, 70]);
  assert.deepEqual(cropBoxForFace(box, { center_dx: 0.5, center_dy: -0.5, side: 1 }), [20, 10, 50, 40]);
});

test('cropFace repeats edge pixels past the image', () => {
  const image = grey(2, 2, [10, 20, 30, 40]);
  const crop = cropFace(image, [-1, -1, 3, 3], { center_dx: 0, center_dy: 0, side: 1 }, 4);
  assert.deepEqual(channel(crop), [10, 10, 20, 20, 10, 10, 20, 20, 30, 30, 40, 40, 30, 30, 40, 40]);
});

test('cropFace takes every pixel at its clamped index, wherever the box falls', () => {
  const image = { width: 7, height: 5, data: Uint8ClampedArray.from({ length: 7 * 5 * 3 }, (_, i) => (i * 37) % 256) };
  const framing = { center_dx: 0, center_dy: 0, side: 1 };
  const clamp = (v, max) => Math.min(Math.max(v, 0), max);
  // [left, top, side]: inside, past the left and top, past the right and bottom, wider than the image,
  // wholly right of it, wholly left of it.
  for (const [left, top, side] of [[1, 1, 3], [-2, -1, 4], [5, 3, 4], [-3, -2, 12], [9, 0, 3], [-6, 1, 4]]) {
    const expected = new Uint8ClampedArray(side * side * 3);
    for (let y = 0; y < side; y++) {
      for (let x = 0; x < side; x++) {
        const from = (clamp(top + y, 4) * 7 + clamp(left + x, 6)) * 3;
        for (let c = 0; c < 3; c++) expected[(y * side + x) * 3 + c] = image.data[from + c];
      }
    }
    const crop = cropFace(image, [left, top, left + side, top + side], framing, side);
    assert.deepEqual(Array.from(crop.data), Array.from(expected), `box at ${left}, ${top}, side ${side}`);
  }
});

test('toRGB and toRGBA convert between 4 and 3 channels', () => {
  const rgba = { width: 2, height: 1, data: Uint8ClampedArray.from([1, 2, 3, 4, 5, 6, 7, 8]) };
  const rgb = toRGB(rgba);
  assert.deepEqual(Array.from(rgb.data), [1, 2, 3, 5, 6, 7]);
  assert.equal(toRGB(rgb), rgb);
  assert.deepEqual(Array.from(toRGBA(rgb).data), [1, 2, 3, 255, 5, 6, 7, 255]);
  assert.throws(() => toRGB({ width: 2, height: 2, data: new Uint8ClampedArray(5) }), /3 or 4 channels/);
});

test('toPlanar lays out channels as planes', () => {
  const planar = toPlanar({ width: 2, height: 1, data: Uint8ClampedArray.from([1, 2, 3, 9, 5, 6, 7, 9]) });
  assert.deepEqual(planar.dims, [3, 1, 2]);
  assert.deepEqual(Array.from(planar.data), [1, 5, 2, 6, 3, 7]);
});

test('areaResize averages torch adaptive-pooling windows', () => {
  const planar = (values, w) => ({ data: Float32Array.from(values), dims: [1, 1, w] });

test('areaResize of a window equals areaResize of the window cropped out, for whole-number pixels', () => {
  const [channels, height, width] = [3, 9, 11];
  const image = { data: Float32Array.from({ length: channels * height * width }, (_, i) => (i * 53) % 256), dims: [channels, height, width] };
  for (const [x0, y0, x1, y1] of [[0, 0, 11, 9], [2, 1, 9, 8], [5, 3, 6, 4], [1, 0, 11, 5]]) {
    const cropped = new Float32Array(channels * (y1 - y0) * (x1 - x0));
    for (let c = 0; c < channels; c++) {
      for (let y = y0; y < y1; y++) {
        for (let x = x0; x < x1; x++) cropped[(c * (y1 - y0) + y - y0) * (x1 - x0) + x - x0] = image.data[(c * height + y) * width + x];
      }
    }
    for (const [outH, outW] of [[4, 4], [3, 5], [1, 1]]) {
      const expected = areaResize({ data: cropped, dims: [channels, y1 - y0, x1 - x0] }, outH, outW);
      const windowed = areaResize(image, outH, outW, rowPrefixSums(image), [x0, y0, x1, y1]);
      assert.deepEqual(Array.from(windowed.data), Array.from(expected.data), `window ${[x0, y0, x1, y1]} to ${outH} x ${outW}`);
    }
  }
});
  assert.deepEqual(Array.from(areaResize(planar([1, 2, 3, 4], 4), 1, 2).data), [1.5, 3.5]);
  // 3 -> 2: windows [0, 2) and [1, 3) overlap.
  assert.deepEqual(Array.from(areaResize(planar([1, 2, 3], 3), 1, 2).data), [1.5, 2.5]);
  const square = { data: Float32Array.from([1, 2, 3, 4]), dims: [1, 2, 2] };
  assert.deepEqual(Array.from(areaResize(square, 1, 1).data), [2.5]);
});

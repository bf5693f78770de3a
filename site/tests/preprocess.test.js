import assert from 'node:assert/strict';
import { test } from 'node:test';

import { normalizeCrops } from '../js/preprocess.js';

test('normalizeCrops scales, centres and lays crops out as NCHW', () => {
  const preprocessing = { size: 1, mean: [0.5, 0.5, 0.5], std: [0.5, 0.25, 0.5] };
  const crops = [
    { width: 1, height: 1, data: Uint8ClampedArray.from([255, 0, 51]) },
    { width: 1, height: 1, data: Uint8ClampedArray.from([0, 255, 255, 255]) }, // RGBA: alpha ignored
  ];
  const input = normalizeCrops(crops, preprocessing);
  assert.deepEqual(input.dims, [2, 3, 1, 1]);
  assert.deepEqual(Array.from(input.data), [1, -2, Math.fround(-0.6), -1, 2, 1]);
  assert.throws(() => normalizeCrops([{ width: 2, height: 2, data: new Uint8ClampedArray(12) }], preprocessing),
    /2 x 2, the classifier takes 1 x 1/);
});

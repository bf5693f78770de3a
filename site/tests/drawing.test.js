// drawing.js's heatmap overlay: at the default opacity it is pipeline.js's overlays (pytorch-grad-cam's
// show_cam_on_image with the manifest's image_weight), for any class and layer chosen.

import assert from 'node:assert/strict';
import test from 'node:test';

import { heatmapOverlay } from '../js/drawing.js';
import { overlays } from '../js/pipeline.js';

function fakeFace(seed) {
  let state = seed;
  const random = () => { state = (state * 1103515245 + 12345) % 2147483648; return state / 2147483648; };
  const crop = { width: 10, height: 10, data: Uint8ClampedArray.from({ length: 300 }, () => Math.floor(256 * random())) };
  const maps = (h, w) => ({ data: Float32Array.from({ length: 3 * h * w }, random), dims: [3, h, w] });
  return {
    class: 'incorrect',
    probabilities: { covered: 0.2, incorrect: 0.5, uncovered: 0.3 },
    heatmaps: { block8: maps(3, 3), repeat_2: maps(5, 5) },
    crop,
  };
}

const hex = (v) => v.toString(16).padStart(2, '0');
const manifest = {
  classes: ['covered', 'incorrect', 'uncovered'],
  drawing: { colormap: Array.from({ length: 256 }, (_, i) => `#${hex(i)}${hex(255 - i)}${hex((i * 7) % 256)}`), image_weight: 0.5 },
};

test('the overlay at 50% opacity is the pipeline overlay of the predicted class', () => {
  const face = fakeFace(7);
  const expected = overlays(face, manifest);
  for (const layer of ['block8', 'repeat_2']) {
    const image = heatmapOverlay(face, manifest, { layer, classIndex: 1, opacity: 0.5 });
    assert.equal(image.width, 10);
    assert.deepEqual(Array.from(image.data), Array.from(expected[layer].data));
  }
});

test('opacity 0 shows the crop alone (rescaled to its brightest value), other classes differ', () => {
  const face = fakeFace(11);
  const plain = heatmapOverlay(face, manifest, { layer: 'block8', classIndex: 0, opacity: 0 });
  const max = Math.max(...face.crop.data);
  assert.deepEqual(Array.from(plain.data), Array.from(face.crop.data, (v) => Math.trunc(Math.fround(Math.fround(255 * Math.fround(v / 255)) / Math.fround(max / 255)))));
  const covered = heatmapOverlay(face, manifest, { layer: 'block8', classIndex: 0, opacity: 0.5 });
  const incorrect = heatmapOverlay(face, manifest, { layer: 'block8', classIndex: 1, opacity: 0.5 });
  assert.notDeepEqual(Array.from(covered.data), Array.from(incorrect.data));
});

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { cameraErrorMessage, closeCamera, openCamera } from '../js/camera.js';
import { colouredHeatmap } from '../js/drawing.js';
import { parseColormap } from '../js/gradcam.js';
import { LiveLoop, RateMeter, adaptFaceSize, classifyInterval, dueTracks } from '../js/live.js';

const manifest = {
  classes: ['covered', 'incorrect', 'uncovered'],
  reasons: ['nose', 'chin', 'nose_and_mouth'],
  live: { min_face_size: 40, iou_threshold: 0.3, window: 2, max_missed: 1 },
};

test('RateMeter counts events per second over its window', () => {
  const meter = new RateMeter(1000);
  for (let t = 0; t <= 900; t += 100) meter.tick(t);
  assert.equal(meter.rate(900), 10);
  assert.equal(meter.rate(5000), 0);
});

test('dueTracks: never classified first, then the stalest, only past the interval, at most maxBatch', () => {
  const seen = [{ id: 1 }, { id: 2 }, { id: 3 }, { id: 4 }];
  const classifiedAt = new Map([[1, 900], [2, 700], [3, 750]]);
  assert.deepEqual(dueTracks(seen, classifiedAt, 1000, 200, 4).map((t) => t.id), [4, 2, 3]);
  assert.deepEqual(dueTracks(seen, classifiedAt, 1000, 200, 2).map((t) => t.id), [4, 2]);
});

test('classifyInterval keeps classification to its share of the time when the classifier is slow', () => {
  assert.equal(classifyInterval(0), 200);
  assert.equal(classifyInterval(80), 200);
  assert.equal(classifyInterval(300), 600);
  assert.equal(classifyInterval(300, 200, 0.25), 1200);
});

test('adaptFaceSize grows the smallest face when steps are slow, within bounds, and shrinks it back', () => {
  assert.equal(adaptFaceSize(40, 40, 200), 50);
  assert.equal(adaptFaceSize(75, 40, 200), 80);
  assert.equal(adaptFaceSize(50, 40, 10), 40);
  assert.equal(adaptFaceSize(50, 40, 60), 50);
});

test('LiveLoop follows faces, classifies them when due and labels them', async () => {
  let clock = 0;
  const frames = [[[0, 0, 50, 50]], [[2, 0, 52, 50], [200, 0, 250, 50]], [[3, 0, 53, 50], [201, 0, 251, 50]]];
  const calls = [];
  const session = {
    liveFrame: async (frame, options) => {
      calls.push(['frame', options.detect]);
      clock += 30;
      return { width: 320, height: 240, faces: frames[frame.index].map((box) => ({ box, score: 0.99 })) };
    },
    liveClassify: async (boxes) => {
      calls.push(['classify', boxes.length]);
      clock += 40;
      return boxes.map((box) => ({
        probabilities: box[0] < 100 ? { covered: 0.8, incorrect: 0.1, uncovered: 0.1 } : { covered: 0.1, incorrect: 0.1, uncovered: 0.8 },
        reason_probabilities: { nose: 0.3, chin: 0.3, nose_and_mouth: 0.4 },
        heatmaps: {},
        crop_box: box,
      }));
    },
  };
  let next = 0;
  const views = [];
  const loop = new LiveLoop({
    session, manifest, now: () => clock, onUpdate: (view) => views.push(view),
    grabFrame: async () => (next < frames.length ? { index: next++ } : null),
  });
  assert.equal(await loop.step(), true);
  assert.equal(await loop.step(), true);
  assert.equal(await loop.step(), true);
  assert.equal(await loop.step(), false);
  // Step 1 classifies face 1, step 2 only the new face 2 (face 1 is not due yet), step 3 none.
  assert.deepEqual(calls, [['frame', true], ['classify', 1], ['frame', true], ['classify', 1], ['frame', true]]);
  const last = views.at(-1);
  assert.deepEqual(last.tracks.map((t) => [t.id, t.label.class]), [[1, 'covered'], [2, 'uncovered']]);
  assert.deepEqual(last.tracks[0].box, [3, 0, 53, 50]);
  assert.ok(last.fps > 0);
});

test('camera errors are told in plain words; closing stops every track', async () => {
  assert.match(cameraErrorMessage({ name: 'NotAllowedError' }), /not allowed/);
  assert.match(cameraErrorMessage({ name: 'NotFoundError' }), /No camera/);
  assert.match(cameraErrorMessage({ name: 'NotReadableError' }), /another app/);
  await assert.rejects(openCamera(undefined), /cannot use a camera/);
  await assert.rejects(openCamera({ getUserMedia: async () => { throw Object.assign(new Error('x'), { name: 'NotAllowedError' }); } }),
    /not allowed/);
  const stopped = [];
  closeCamera({ getTracks: () => [{ stop: () => stopped.push(1) }, { stop: () => stopped.push(2) }] });
  assert.deepEqual(stopped, [1, 2]);
  closeCamera(null);
});

test('colouredHeatmap colours an upsampled map with the colormap, opaque', () => {
  const colormap = parseColormap(Array.from({ length: 256 }, (_, i) => `#${i.toString(16).padStart(2, '0')}0000`));
  const rgba = colouredHeatmap({ data: Float32Array.from([0, 1, 0, 1]), dims: [1, 2, 2] }, colormap, 2);
  // Min-max scaling leaves the top a hair under 1, so it lands in entry 254 or 255 (as Python's does).
  assert.deepEqual(Array.from(rgba).map((v, i) => (i % 4 === 0 && v >= 254 ? 255 : v)),
    [0, 0, 0, 255, 255, 0, 0, 255, 0, 0, 0, 255, 255, 0, 0, 255]);
});

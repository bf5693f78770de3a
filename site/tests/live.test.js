import assert from 'node:assert/strict';
import { test } from 'node:test';

import { cameraErrorMessage, closeCamera, openCamera } from '../js/camera.js';
import { colouredHeatmap } from '../js/drawing.js';
import { parseColormap } from '../js/gradcam.js';
import { LiveLoop, RateMeter, adaptFaceSize, classifyInterval, dueTracks } from '../js/live.js';

const manifest = {
  classes: ['covered', 'incorrect', 'uncovered'],
  reasons: ['nose', 'chin', 'nose_and_mouth'],
  tracking: { min_face_size: 40, iou_threshold: 0.3, window: 2, max_missed: 1 },
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
  assert.equal(classifyInterval(0), 150);
  assert.equal(classifyInterval(80), 150);
  assert.equal(classifyInterval(80, 200), 200);
  assert.equal(classifyInterval(300), 375);
  assert.equal(classifyInterval(300, 200, 0.25), 1200);
});

test('adaptFaceSize grows the smallest face when steps are slow, within bounds, and shrinks it back', () => {
  assert.equal(adaptFaceSize(40, 40, 200), 50);
  assert.equal(adaptFaceSize(75, 40, 200), 80);
  assert.equal(adaptFaceSize(50, 40, 10), 40);
  assert.equal(adaptFaceSize(50, 40, 60), 50);
});

/** A fake session over scripted detections, a fake clock, and the calls made, for LiveLoop. */
function fakeRig(frames, { detectMs = 30, classifyMs = 40 } = {}) {
  const rig = { clock: 0, calls: [], views: [], next: 0 };
  rig.session = {
    liveFrame: async (frame, options) => {
      rig.calls.push(['frame', options.detect]);
      if (options.detect) rig.clock += detectMs;
      return { width: 320, height: 240, faces: options.detect ? frames[frame.index].map((box) => ({ box, score: 0.99 })) : null };
    },
    liveClassify: async (boxes) => {
      rig.calls.push(['classify', boxes.length]);
      rig.clock += classifyMs;
      const faces = boxes.map((box) => ({
        probabilities: box[0] < 100 ? { covered: 0.8, incorrect: 0.1, uncovered: 0.1 } : { covered: 0.1, incorrect: 0.1, uncovered: 0.8 },
        reason_probabilities: { nose: 0.3, chin: 0.3, nose_and_mouth: 0.4 },
        heatmaps: {},
        crop_box: box,
      }));
      return { faces, runMs: 0.75 * classifyMs };
    },
  };
  rig.options = {
    // The scripted sequences below are timed for faces re-classified every 200 ms at most.
    session: rig.session, manifest, now: () => rig.clock, onUpdate: (view) => rig.views.push(view), classifyIntervalMs: 200,
    sleep: async (ms) => { rig.calls.push(['sleep', ms]); rig.clock += ms; },
    grabFrame: async () => (rig.next < frames.length ? { index: rig.next++ } : null),
  };
  return rig;
}

test('LiveLoop detects while no face is tracked, then every DETECT_INTERVAL_MS; in between it follows and classifies', async () => {
  const frames = [[[0, 0, 50, 50]], [], [], [[9, 0, 59, 50], [201, 0, 251, 50]]];
  const rig = fakeRig(frames);
  const followed = [];
  const loop = new LiveLoop({
    ...rig.options,
    followBoxes: (tracks) => { followed.push(tracks.map((t) => t.id)); return tracks.map((t) => t.box.map((v, i) => (i % 2 ? v : v + 1))); },
  });
  while (await loop.step());
  // Frame 0 (t = 0): detect, classify face 1. No detection is due for 500 ms: frames 1 and 2 are classify
  // steps on followed boxes, each after a wait until face 1 is due again (every 200 ms), and frame 3
  // comes at the detection interval, where the second face is found and classified.
  assert.deepEqual(rig.calls.filter(([kind]) => kind !== 'sleep'), [
    ['frame', true], ['classify', 1], ['frame', false], ['classify', 1], ['frame', false], ['classify', 1],
    ['frame', true], ['classify', 1]]);
  assert.deepEqual(rig.calls.filter(([kind]) => kind === 'sleep').map(([, ms]) => ms), [130, 160, 60, 30]);
  assert.deepEqual(followed, [[1], [1]]);
  const last = rig.views.at(-1);
  assert.deepEqual(last.tracks.map((t) => [t.id, t.label.class]), [[1, 'covered'], [2, 'uncovered']]);
  assert.deepEqual(last.tracks[0].box, [9, 0, 59, 50]);
  assert.ok(last.fps > 0 && last.detections > 0);
  // Classify steps say they did not detect.
  assert.ok(rig.views.some((view) => view.timing.detectMs === null && view.timing.classified === 1));
  assert.ok(rig.views.every((view) => view.timing.runMs === (view.timing.classified ? 30 : 0)));
});

test('LiveLoop moves tracked boxes to the followed ones and classifies there', async () => {
  const frames = [[[0, 0, 50, 50]], [[0, 0, 50, 50]]];
  const rig = fakeRig(frames, { classifyMs: 250 });
  const classified = [];
  const session = { ...rig.session, liveClassify: async (boxes) => { classified.push(boxes); return rig.session.liveClassify(boxes); } };
  const loop = new LiveLoop({ ...rig.options, session, followBoxes: (tracks) => tracks.map(() => [20, 10, 70, 60]) });
  assert.equal(await loop.step(), true);
  // A slow classifier (250 ms) spaces classifications to 250 / CLASSIFY_SHARE ms: the loop waits first.
  assert.equal(await loop.step(), true);
  assert.equal(rig.calls.at(-1)[0], 'sleep');
  assert.equal(await loop.step(), true);
  assert.deepEqual(classified, [[[0, 0, 50, 50]], [[20, 10, 70, 60]]]);
  assert.deepEqual(rig.views.at(-1).tracks[0].box, [20, 10, 70, 60]);
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

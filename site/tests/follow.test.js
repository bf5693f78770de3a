import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Follower, grayFrame, matchPatch } from '../js/follow.js';

/** A gray frame of random texture. */
function texturedFrame(width, height, seed = 1) {
  let state = seed;
  const random = () => { state = (state * 1103515245 + 12345) % 2147483648; return state / 2147483648; };
  const data = new Uint8Array(width * height);
  for (let i = 0; i < data.length; i++) data[i] = Math.round(60 + 140 * random());
  return { width, height, data };
}

/** The frame moved by (dx, dy): pixel (x, y) of the result is pixel (x - dx, y - dy) of frame, edges repeated. */
function moved(frame, dx, dy) {
  const { width, height } = frame;
  const data = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const sx = Math.min(width - 1, Math.max(0, x - dx));
      const sy = Math.min(height - 1, Math.max(0, y - dy));
      data[y * width + x] = frame.data[sy * width + sx];
    }
  }
  return { width, height, data };
}

test('grayFrame weighs R, G and B as BT.601 luma, rounded', () => {
  const rgba = { width: 3, height: 1, data: Uint8ClampedArray.of(255, 0, 0, 255, 0, 255, 0, 255, 255, 255, 255, 255) };
  assert.deepEqual(Array.from(grayFrame(rgba).data), [77, 149, 255]);
});

test('matchPatch finds the shift of a moved patch, with zero cost', () => {
  const reference = texturedFrame(80, 60);
  for (const [dx, dy] of [[0, 0], [3, -2], [-5, 4], [6, 6]]) {
    const match = matchPatch(reference, moved(reference, dx, dy), [20, 15, 30, 25], [0, 0], 6);
    assert.deepEqual([match.dx, match.dy, match.cost], [dx, dy, 0]);
  }
});

test('matchPatch searches around its start and keeps the patch inside the frame', () => {
  const reference = texturedFrame(80, 60);
  const match = matchPatch(reference, moved(reference, 10, 0), [20, 15, 30, 25], [8, 0], 3);
  assert.deepEqual([match.dx, match.dy], [10, 0]);
  assert.equal(matchPatch(reference, reference, [0, 0, 80, 60], [0, 0], 2).dx, 0);
  assert.equal(matchPatch(reference, reference, [0, 0, 80, 60], [5, 0], 2), null);
});

test('matchPatch on a flat frame stays put (ties go to the smallest move)', () => {
  const flat = { width: 40, height: 40, data: new Uint8Array(1600).fill(90) };
  assert.deepEqual(matchPatch(flat, flat, [10, 10, 10, 10], [0, 0], 4), { dx: 0, dy: 0, cost: 0 });
});

test('Follower moves each box and crop box with its face, frame after frame, in frame pixels', () => {
  const reference = texturedFrame(160, 120, 7);
  const follower = new Follower({ radius: 4 });
  const tracks = [
    { id: 1, box: [80, 80, 240, 240], crop_box: [40, 40, 280, 280], label: { class: 'covered' } },
    { id: 2, box: [400, 200, 560, 360], crop_box: null, label: null },
  ];
  follower.reset(reference, tracks, 0.25);
  // The whole frame drifts 3 gray pixels right and 2 down per frame: 9 right, 6 down after three frames,
  // beyond one frame's search radius of 4, found because each search starts where the last ended.
  let followed;
  for (let k = 1; k <= 3; k++) followed = follower.follow(moved(reference, 3 * k, 2 * k));
  assert.deepEqual(followed[0].box, [116, 104, 276, 264]);
  assert.deepEqual(followed[0].crop_box, [76, 64, 316, 304]);
  assert.deepEqual(followed[1].box, [436, 224, 596, 384]);
  assert.equal(followed[1].crop_box, null);
  assert.deepEqual(followed.map((t) => [t.id, t.label]), [[1, { class: 'covered' }], [2, null]]);
  assert.deepEqual(tracks[0].box, [80, 80, 240, 240]); // the step's tracks are not changed
});

test('Follower leaves a box where it was when its face is gone (a poor best match)', () => {
  const reference = texturedFrame(160, 120, 3);
  const follower = new Follower({ radius: 3, maxCost: 10 });
  follower.reset(reference, [{ id: 1, box: [40, 40, 200, 200], crop_box: [0, 0, 240, 240] }], 0.25);
  const [track] = follower.follow(texturedFrame(160, 120, 99));
  assert.deepEqual(track.box, [40, 40, 200, 200]);
});

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Tracker, boxIou, matchBoxes } from '../js/tracking.js';

const rule = { min_face_size: 40, iou_threshold: 0.3, window: 3, max_missed: 2 };
const classes = ['covered', 'incorrect', 'uncovered'];
const reasons = ['nose', 'chin', 'nose_and_mouth'];

test('boxIou: identical, disjoint, touching and half-overlapping boxes', () => {
  assert.equal(boxIou([0, 0, 10, 10], [0, 0, 10, 10]), 1);
  assert.equal(boxIou([0, 0, 10, 10], [20, 20, 30, 30]), 0);
  assert.equal(boxIou([0, 0, 10, 10], [10, 0, 20, 10]), 0);
  assert.equal(boxIou([0, 0, 10, 10], [5, 0, 15, 10]), 50 / 150);
});

test('matchBoxes takes the best overlaps first and each box at most once', () => {
  const tracks = [[0, 0, 10, 10], [100, 0, 110, 10]];
  const detections = [[101, 0, 111, 10], [1, 0, 11, 10], [2, 0, 12, 10]];
  assert.deepEqual(matchBoxes(tracks, detections, 0.3), [[0, 1], [1, 0]]);
  assert.deepEqual(matchBoxes(tracks, [[50, 50, 60, 60]], 0.3), []);
});

test('Tracker keeps ids across rounds, starts new ones, drops a track after max_missed rounds', () => {
  const tracker = new Tracker(rule, classes, reasons);
  const [a, b] = tracker.update([[0, 0, 10, 10], [100, 0, 110, 10]]);
  assert.deepEqual([a.id, b.id], [1, 2]);
  const [b2, a2, c] = tracker.update([[101, 0, 111, 10], [1, 1, 11, 11], [200, 0, 210, 10]]);
  assert.deepEqual([b2.id, a2.id, c.id], [2, 1, 3]);
  assert.deepEqual(a2.box, [1, 1, 11, 11]);
  tracker.update([[0, 0, 10, 10]]); // tracks 2 and 3 missed once
  tracker.update([[0, 0, 10, 10]]); // twice: kept
  assert.deepEqual(tracker.tracks.map((t) => t.id), [1, 2, 3]);
  tracker.update([[0, 0, 10, 10]]); // three times: dropped
  assert.deepEqual(tracker.tracks.map((t) => t.id), [1]);
  const [d] = tracker.update([[100, 0, 110, 10]]);
  assert.equal(d.id, 4);
});

test('a label is the mean over the last window classifications, so one odd frame does not flip it', () => {
  const tracker = new Tracker(rule, classes, reasons);
  const [track] = tracker.update([[0, 0, 10, 10]]);
  assert.equal(tracker.label(track), null);
  tracker.observe(track, [0.9, 0.05, 0.05], [0.2, 0.5, 0.3]);
  tracker.observe(track, [0.8, 0.1, 0.1], [0.2, 0.5, 0.3]);
  tracker.observe(track, [0.1, 0.1, 0.8], [0.2, 0.5, 0.3]);
  assert.equal(tracker.label(track).class, 'covered');
  assert.equal(tracker.label(track).reason, null);
  tracker.observe(track, [0.1, 0.1, 0.8], [0.2, 0.5, 0.3]);
  tracker.observe(track, [0.1, 0.8, 0.1], [0.2, 0.5, 0.3]); // window now: uncovered, uncovered, incorrect
  const label = tracker.label(track);
  assert.equal(label.class, 'uncovered');
  assert.ok(Math.abs(label.probabilities.uncovered - 1.7 / 3) < 1e-12);
  tracker.observe(track, [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]);
  tracker.observe(track, [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]);
  assert.equal(tracker.label(track).class, 'incorrect');
  assert.equal(tracker.label(track).reason, 'nose_and_mouth');
});

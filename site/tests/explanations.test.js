// explanations.js: the line under the heatmap, from the summary scripts/build_site.py writes.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { heatmapGroup, heatmapNote } from '../js/explanations.js';

const SUMMARY = {
  split: 'holdout',
  layers: {
    repeat_2: { 'incorrect-chin': { rate: 0.416, faces: 51 }, covered: { rate: 0.9, faces: 553 } },
    block8: { 'incorrect-chin': { rate: 0.1, faces: 51 } },
  },
};

test('an incorrectly worn mask is described by the reason the model names', () => {
  assert.equal(heatmapGroup('incorrect', 'nose_and_mouth'), 'incorrect-nose_and_mouth');
  assert.equal(heatmapGroup('incorrect', null), null);
  assert.equal(heatmapGroup('covered', 'chin'), 'covered');
  assert.equal(heatmapGroup('other', null), null);
});

test('the note gives the hit rate of the layer shown for that kind of face', () => {
  const note = heatmapNote(SUMMARY, { layer: 'repeat_2', className: 'incorrect', reason: 'chin' });
  assert.match(note, /^The map is Grad-CAM at repeat_2: .*"incorrect"\./);
  assert.match(note, /On 51 holdout faces of this kind its peak fell on the uncovered chin 42% of the time\.$/);
  assert.match(heatmapNote(SUMMARY, { layer: 'block8', className: 'incorrect', reason: 'chin' }), / 10% of the time\.$/);
});

test('without a measurement for that face, layer or site, the note says only what the map is', () => {
  const plain = 'The map is Grad-CAM at block8: where the network\'s gradients place the evidence for "covered".';
  assert.equal(heatmapNote(SUMMARY, { layer: 'block8', className: 'covered', reason: null }), plain);
  assert.equal(heatmapNote({}, { layer: 'block8', className: 'covered', reason: null }), plain);
  assert.equal(heatmapNote(null, { layer: 'block8', className: 'covered', reason: null }), plain);
  assert.doesNotMatch(heatmapNote(SUMMARY, { layer: 'repeat_2', className: 'incorrect', reason: null }), /%/);
});

// abstention.js against masklens/abstention.py's answers (tests/js_fixtures.py): the page and the CLI
// calibrate the same probabilities and abstain on the same faces.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { abstentionRule, calibratedSoftmax, cantTell, MESSAGES } from '../js/abstention.js';

const { abstention } = JSON.parse(readFileSync(new URL('./fixtures/python.json', import.meta.url), 'utf8'));

test('calibrated probabilities are softmax(logits / temperature), within float32 rounding of Python', () => {
  const actual = calibratedSoftmax({ data: Float32Array.from(abstention.logits), dims: abstention.dims }, abstention.rule.temperature);
  let worst = 0;
  abstention.probabilities.forEach((p, i) => { worst = Math.max(worst, Math.abs(actual[i] - p)); });
  assert.ok(worst <= 1e-6, `worst difference ${worst}`);
});

test('each face gets the reason for no verdict Python gives it', () => {
  const answers = abstention.cases.map(({ probabilities, box }) => cantTell(probabilities, box, abstention.rule));
  assert.deepEqual(answers, abstention.cases.map((c) => c.expected));
  assert.ok(answers.includes('too_small') && answers.includes('unsure') && answers.includes(null));
  assert.ok(Object.keys(MESSAGES).every((reason) => MESSAGES[reason].startsWith('can’t tell')));
});

test('a manifest without a rule abstains from nothing and keeps the probabilities', () => {
  const rule = abstentionRule({});
  assert.deepEqual(rule, { temperature: 1, min_probability: 0, min_face_size: 0 });
  assert.equal(cantTell([0.34, 0.33, 0.33], [0, 0, 1, 1], rule), null);
});

// When the checker says "can't tell" instead of a verdict: masklens/abstention.py in JavaScript, the same
// rule with the same float32 arithmetic, so that the page and the CLI abstain on the same faces.
//
// rule = abstentionRule(manifest) -> {temperature, min_probability, min_face_size} (manifest.abstention;
//   without one: temperature 1, no abstention)
// calibratedSoftmax(logits, temperature) : logits {data, dims [N, K]} -> Float32Array [N * K],
//   softmax(logits / temperature)
// cantTell(probabilities, box, rule) -> "too_small" | "unsure" | null: too small when the box's mean side
//   ((width + height) / 2, photo pixels) is under min_face_size, unsure when the top probability is under
//   min_probability

import { softmax } from './gradcam.js';

export const TOO_SMALL = 'too_small';
export const UNSURE = 'unsure';
export const MESSAGES = {
  [TOO_SMALL]: 'can’t tell: the face is too small (move closer)',
  [UNSURE]: 'can’t tell: the face is unclear (face the camera, in good light)',
};

const NO_ABSTENTION = { temperature: 1, min_probability: 0, min_face_size: 0 };

export function abstentionRule(manifest) {
  return manifest.abstention ?? NO_ABSTENTION;
}

export function calibratedSoftmax(logits, temperature) {
  const divisor = Math.fround(temperature);
  return softmax({ data: Float32Array.from(logits.data, (value) => Math.fround(value / divisor)), dims: logits.dims });
}

export function cantTell(probabilities, box, rule) {
  if ((box[2] - box[0] + (box[3] - box[1])) / 2 < rule.min_face_size) return TOO_SMALL;
  if (Math.max(...probabilities) < rule.min_probability) return UNSURE;
  return null;
}

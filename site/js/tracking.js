// Faces followed across webcam frames: export/tracking.py's rule, step for step, so that the webcam
// mode and the Python video predictor give a face the same track and the same label.
//
// rule: the manifest's `tracking` {min_face_size, detect_max_side, iou_threshold, window, max_missed}.
// boxIou(a, b) -> IoU of two [x1, y1, x2, y2] boxes.
// matchBoxes(trackBoxes, detectionBoxes, iouThreshold) -> [[trackIndex, detectionIndex]]: all pairs
//   with IoU >= threshold, greedy from the highest IoU (ties: lower track, then lower detection index).
// const tracker = new Tracker(rule, classes, reasons)
//   tracker.update(boxes) -> the track of each box, in box order (after a detection round): matched
//     tracks take the box; leftover boxes start tracks (ids from 1); leftover tracks survive
//     rule.max_missed rounds with their old box.
//   tracker.observe(track, probabilities, reasonProbabilities): one classification (arrays in class order).
//   tracker.label(track) -> {class, probabilities: {name: p}, reason, reason_probabilities} or null:
//     means over the track's last rule.window classifications, argmax (first on ties).
//   tracker.tracks: the live tracks {id, box, missed, probabilities: [[...]], reasonProbabilities: [[...]]}.

export function boxIou(a, b) {
  const width = Math.min(a[2], b[2]) - Math.max(a[0], b[0]);
  const height = Math.min(a[3], b[3]) - Math.max(a[1], b[1]);
  if (width <= 0 || height <= 0) return 0;
  const inter = width * height;
  const union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return union > 0 ? inter / union : 0;
}

export function matchBoxes(trackBoxes, detectionBoxes, iouThreshold) {
  const candidates = [];
  trackBoxes.forEach((trackBox, t) => {
    detectionBoxes.forEach((detectionBox, d) => {
      const overlap = boxIou(trackBox, detectionBox);
      if (overlap >= iouThreshold) candidates.push([overlap, t, d]);
    });
  });
  candidates.sort((a, b) => b[0] - a[0] || a[1] - b[1] || a[2] - b[2]);
  const usedTracks = new Set();
  const usedDetections = new Set();
  const pairs = [];
  for (const [, t, d] of candidates) {
    if (!usedTracks.has(t) && !usedDetections.has(d)) {
      usedTracks.add(t);
      usedDetections.add(d);
      pairs.push([t, d]);
    }
  }
  return pairs;
}

function firstArgmax(values) {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

function mean(rows) {
  return rows[0].map((_, k) => rows.reduce((sum, row) => sum + row[k], 0) / rows.length);
}

export class Tracker {
  constructor(rule, classes, reasons) {
    this.rule = rule;
    this.classes = classes;
    this.reasons = reasons;
    this.tracks = [];
    this.nextId = 1;
  }

  update(boxes) {
    const detections = boxes.map((box) => Array.from(box, Number));
    const pairs = matchBoxes(this.tracks.map((track) => track.box), detections, this.rule.iou_threshold);
    const ofBox = new Array(detections.length).fill(null);
    const matched = new Set();
    for (const [t, d] of pairs) {
      const track = this.tracks[t];
      track.box = detections[d];
      track.missed = 0;
      ofBox[d] = track;
      matched.add(t);
    }
    const kept = [];
    this.tracks.forEach((track, t) => {
      if (!matched.has(t)) track.missed += 1;
      if (track.missed <= this.rule.max_missed) kept.push(track);
    });
    detections.forEach((box, d) => {
      if (ofBox[d] === null) {
        ofBox[d] = { id: this.nextId++, box, missed: 0, probabilities: [], reasonProbabilities: [] };
        kept.push(ofBox[d]);
      }
    });
    this.tracks = kept;
    return ofBox;
  }

  observe(track, probabilities, reasonProbabilities) {
    track.probabilities = [...track.probabilities, Array.from(probabilities, Number)].slice(-this.rule.window);
    track.reasonProbabilities = [...track.reasonProbabilities, Array.from(reasonProbabilities, Number)]
      .slice(-this.rule.window);
  }

  label(track) {
    if (track.probabilities.length === 0) return null;
    const probabilities = mean(track.probabilities);
    const reasonProbabilities = mean(track.reasonProbabilities);
    const predicted = this.classes[firstArgmax(probabilities)];
    return {
      class: predicted,
      probabilities: Object.fromEntries(this.classes.map((name, k) => [name, probabilities[k]])),
      reason: predicted === 'incorrect' ? this.reasons[firstArgmax(reasonProbabilities)] : null,
      reason_probabilities: Object.fromEntries(this.reasons.map((name, k) => [name, reasonProbabilities[k]])),
    };
  }
}

// The webcam loop, free of the DOM: grab a frame, find its faces or follow the known ones, re-classify
// the tracked faces that are due, hand the labelled tracks to the page. Dependencies are injected so
// that Node tests drive it with fakes.
//
// const loop = new LiveLoop({session, manifest, grabFrame, followBoxes, onUpdate, now, sleep, classifyIntervalMs})
//   session: liveFrame(frame, {detect, minFaceSize}) and liveClassify(boxes), as session.js;
//   grabFrame() -> Promise<frame | null> (null: no frame yet);
//   followBoxes(tracks) -> the tracks' boxes moved to where their faces are in the frame grabbed last
//     (the page's follow.js; by default the boxes stay where they are);
//   onUpdate(view) after every step; now() -> milliseconds; sleep(ms) -> Promise; classifyIntervalMs: the
//     shortest time between two classifications of a face (CLASSIFY_INTERVAL_MS by default).
//   view: {width, height, tracks: [{id, box, label, heatmaps, crop_box}], fps, detections, classifications,
//          minFaceSize, timing: {detectMs, classifyMs, runMs, classified}} (this step's times; detectMs null
//          when the step did not detect; runMs: of classifyMs, the classifier's own run in the worker)
//     label: tracker.label (null until first classified); fps: steps per second; detections: detection
//     steps per second; classifications: re-classifications per second per tracked face, all over the last 2 s.
// await loop.run() until loop.stop(); each step awaits the previous, so work never piles up.
//
// Shedding work: the detector (which finds new faces and puts the boxes back on the faces) runs at
// every step while no face is tracked, else every DETECT_INTERVAL_MS; in between, steps take the
// boxes the page followed and only classify. A face is re-classified every CLASSIFY_INTERVAL_MS (so up to
// 6.7 times a second, leaving room above the 5 a second a live label should get), and
// less often when the classifier is slow: at most CLASSIFY_SHARE of the time goes to classifying (the
// rest to detection and to the page, which redraws the overlay at every video frame). A step with
// nothing due waits for the next due time. When detection takes longer than a frame at TARGET_FPS,
// the smallest face looked for grows (a coarser, cheaper pyramid), up to MAX_FACE_SCALE times the
// manifest's tracking.min_face_size, and comes back down when there is time to spare.

import { Tracker } from './tracking.js';

export const TARGET_FPS = 15;
export const CLASSIFY_INTERVAL_MS = 150;
export const CLASSIFY_SHARE = 0.8;
export const DETECT_INTERVAL_MS = 500;
export const MAX_BATCH = 4;
export const MAX_FACE_SCALE = 2;
const RATE_WINDOW_MS = 2000;

/** Events per second over a sliding window. */
export class RateMeter {
  constructor(windowMs = RATE_WINDOW_MS) {
    this.windowMs = windowMs;
    this.times = [];
  }

  tick(t) {
    this.times.push(t);
  }

  rate(t) {
    while (this.times.length && this.times[0] <= t - this.windowMs) this.times.shift();
    if (this.times.length < 2) return 0;
    const span = Math.max(t - this.times[0], 1);
    return (1000 * (this.times.length - 1)) / span;
  }
}

/** The tracks seen this step that are due for a classification: never classified first, then the stalest. */
export function dueTracks(seen, classifiedAt, now, intervalMs = CLASSIFY_INTERVAL_MS, maxBatch = MAX_BATCH) {
  const last = (track) => classifiedAt.get(track.id) ?? -Infinity;
  return seen
    .filter((track) => now - last(track) >= intervalMs)
    .sort((a, b) => last(a) - last(b) || a.id - b.id)
    .slice(0, maxBatch);
}

/** How long a face waits between classifications, given the recent time a classification call takes. */
export function classifyInterval(classifyMs, minimumMs = CLASSIFY_INTERVAL_MS, share = CLASSIFY_SHARE) {
  return Math.max(minimumMs, classifyMs / share);
}

/** The next smallest face size: up by a quarter when detection is slower than a frame, down when it is quick. */
export function adaptFaceSize(current, base, detectMs, targetFps = TARGET_FPS, maxScale = MAX_FACE_SCALE) {
  const budget = 1000 / targetFps;
  if (detectMs > 1.1 * budget) return Math.min(current * 1.25, base * maxScale);
  if (detectMs < 0.6 * budget) return Math.max(current / 1.25, base);
  return current;
}

const stayPut = (tracks) => tracks.map((track) => track.box);
const wait = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

export class LiveLoop {
  constructor({ session, manifest, grabFrame, followBoxes = stayPut, onUpdate, now = () => performance.now(), sleep = wait,
    classifyIntervalMs = CLASSIFY_INTERVAL_MS }) {
    this.session = session;
    this.manifest = manifest;
    this.grabFrame = grabFrame;
    this.followBoxes = followBoxes;
    this.onUpdate = onUpdate;
    this.now = now;
    this.sleep = sleep;
    this.classifyIntervalMs = classifyIntervalMs;
    this.tracker = new Tracker(manifest.tracking, manifest.classes, manifest.reasons);
    this.classifiedAt = new Map();
    this.explained = new Map(); // track id -> {heatmaps, crop_box} of its last classification
    this.steps = new RateMeter();
    this.detections = new RateMeter();
    this.classifications = new RateMeter();
    this.detectedAt = -Infinity;
    this.minFaceSize = manifest.tracking.min_face_size;
    this.classifyMs = 0; // moving average of a classification call
    this.running = false;
  }

  /** One step; false when there was no frame to take, true otherwise (also after waiting for work to be due). */
  async step() {
    const before = this.now();
    const tracked = this.tracker.tracks.filter((track) => track.missed === 0);
    const interval = classifyInterval(this.classifyMs, this.classifyIntervalMs);
    const detect = tracked.length === 0 || before - this.detectedAt >= DETECT_INTERVAL_MS;
    if (!detect && dueTracks(tracked, this.classifiedAt, before, interval).length === 0) {
      const nextDue = Math.min(this.detectedAt + DETECT_INTERVAL_MS,
        ...tracked.map((track) => (this.classifiedAt.get(track.id) ?? -Infinity) + interval));
      await this.sleep(Math.max(1, nextDue - before));
      return true;
    }
    const frame = await this.grabFrame();
    if (!frame) return false;
    const started = this.now();
    let seen;
    let width;
    let height;
    if (detect) {
      let faces;
      ({ width, height, faces } = await this.session.liveFrame(frame, { detect: true, minFaceSize: this.minFaceSize }));
      seen = this.tracker.update(faces.map((face) => face.box));
      this.detectedAt = started;
    } else {
      const boxes = this.followBoxes(tracked);
      ({ width, height } = await this.session.liveFrame(frame, { detect: false }));
      // The next detection then matches its boxes against where the faces are now.
      tracked.forEach((track, i) => { track.box = boxes[i]; });
      seen = tracked;
    }
    const detected = this.now();
    const due = dueTracks(seen, this.classifiedAt, started, interval);
    let runMs = 0;
    if (due.length) {
      const { faces: classified, runMs: took } = await this.session.liveClassify(due.map((track) => track.box));
      runMs = took;
      const { classes, reasons } = this.manifest;
      classified.forEach((face, i) => {
        const track = due[i];
        this.tracker.observe(track, classes.map((name) => face.probabilities[name]),
          reasons.map((name) => face.reason_probabilities[name]));
        this.explained.set(track.id, { heatmaps: face.heatmaps, crop_box: face.crop_box });
        this.classifiedAt.set(track.id, started);
        this.classifications.tick(started);
      });
    }
    const live = new Set(this.tracker.tracks.map((track) => track.id));
    for (const id of [...this.classifiedAt.keys()]) {
      if (!live.has(id)) { this.classifiedAt.delete(id); this.explained.delete(id); }
    }
    const finished = this.now();
    if (due.length) {
      const took = finished - detected;
      this.classifyMs = this.classifyMs ? 0.7 * this.classifyMs + 0.3 * took : took;
    }
    this.steps.tick(finished);
    if (detect) {
      this.detections.tick(finished);
      this.minFaceSize = adaptFaceSize(this.minFaceSize, this.manifest.tracking.min_face_size, detected - started);
    }
    const current = this.tracker.tracks.filter((track) => track.missed === 0);
    this.onUpdate({
      width,
      height,
      tracks: current.map((track) => ({
        id: track.id,
        box: track.box,
        label: this.tracker.label(track),
        ...(this.explained.get(track.id) ?? { heatmaps: null, crop_box: null }),
      })),
      fps: this.steps.rate(finished),
      detections: this.detections.rate(finished),
      classifications: current.length ? this.classifications.rate(finished) / current.length : 0,
      minFaceSize: this.minFaceSize,
      timing: { detectMs: detect ? detected - started : null, classifyMs: finished - detected, runMs, classified: due.length },
    });
    return true;
  }

  async run() {
    this.running = true;
    while (this.running) {
      if (!(await this.step())) await this.sleep(30);
    }
  }

  stop() {
    this.running = false;
  }
}

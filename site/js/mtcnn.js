// MTCNN face detection: the cascade of export/mtcnn.py (itself facenet-pytorch's detect_face),
// step for step, over injected nets so that it runs in the browser and under Node alike.
//
// detectFaces(image, runNet, settings) -> Promise<[{box, score, landmarks}]>, highest score first
//   image: {width, height, data} RGB or RGBA (imaging.js); alpha is ignored.
//   runNet(name, data, dims) -> Promise<{outputName: {data: Float32Array, dims}}>: runs net
//     "pnet" ([1, 3, h, w] -> box_offsets [1, 4, h', w'], probabilities [1, 2, h', w']),
//     "rnet" ([N, 3, 24, 24] -> box_offsets [N, 4], probabilities [N, 2]) or
//     "onet" ([N, 3, 48, 48] -> box_offsets [N, 4], landmarks [N, 10], probabilities [N, 2]).
//   settings: {min_face_size, thresholds: [p, r, o], factor}, the manifest's face_detector.
//   box: [x1, y1, x2, y2] in pixels of the image, may reach past its edges; score: O-Net's face
//   probability; landmarks: [[x, y] x 5]: the eye on the image's left, the other eye, the nose tip,
//   the mouth corner on the image's left, the other one.
// findFaces(image, runNet, settings) -> the same, with the manifest's padding, second try for
//   smaller faces, whole-photo fallback and second look with the nets fine-tuned on masked faces
//   (settings.padding, settings.retry_min_face_size, settings.fallback_threshold,
//   settings.second_look): what the site and the predictor run.
// createOrtRunner(ort, sessions) -> runNet over onnxruntime-web InferenceSessions by net name.
//
// Boxes are arrays [x1, y1, x2, y2]. Python computes in float32 throughout; every operation here
// is rounded to float32 (Math.fround) in the same order, so the decisions the cascade takes
// (thresholds, suppression) fall the same way given the same net outputs. Comparisons with a
// Python float threshold are float32 comparisons too: numpy casts the threshold to float32.

import { areaResize, rowPrefixSums, toPlanar } from './imaging.js';

const f32 = Math.fround;

export const PNET_CELL = 12;
export const PNET_STRIDE = 2;
export const RNET_SIZE = 24;
export const ONET_SIZE = 48;

/** Pixel values 0..255 -> the nets' input range, about -1..1. */
export function normalizeForNet(planar) {
  const data = new Float32Array(planar.data.length);
  for (let i = 0; i < data.length; i++) data[i] = f32(f32(planar.data[i] - 127.5) * 0.0078125);
  return { data, dims: planar.dims };
}

/** Scales at which a face of minFaceSize px, and every factor**-k times larger, fills 12 px. */
export function pyramidScales(height, width, minFaceSize, factor) {
  let scale = PNET_CELL / minFaceSize;
  let shorter = Math.min(height, width) * scale;
  const scales = [];
  while (shorter >= PNET_CELL) {
    scales.push(scale);
    scale *= factor;
    shorter *= factor;
  }
  return scales;
}

export function pyramidLevelSize(height, width, scale) {
  return [Math.trunc(height * scale + 1), Math.trunc(width * scale + 1)];
}

/**
 * Boxes -> slice bounds [x0, y0, x1, y1] of their part inside the image: facenet truncates the
 * coordinates, treats them as 1-based and clips them to [1, size]; the slice is [x1 - 1, x2).
 * x1 <= x0 or y1 <= y0 means an empty crop.
 */
export function cropBounds(boxes, width, height) {
  return boxes.map((box) => {
    const [bx1, by1, bx2, by2] = box.map(Math.trunc);
    return [Math.max(bx1, 1) - 1, Math.max(by1, 1) - 1, Math.min(bx2, width), Math.min(by2, height)];
  });
}

/**
 * One pyramid level's P-Net output -> candidates {boxes, scores, offsets}: every output cell whose
 * face probability reaches the threshold stands for a 12 x 12 window at twice its position in the
 * level, mapped back to image pixels. Cells come in row-major order, as torch's nonzero gives them.
 */
export function pnetCandidates(boxOffsets, probabilities, scale, threshold) {
  const [, , rows, cols] = probabilities.dims;
  const plane = rows * cols;
  const limit = f32(threshold);
  const scale32 = f32(scale);
  const boxes = [];
  const scores = [];
  const offsets = [];
  for (let y = 0; y < rows; y++) {
    for (let x = 0; x < cols; x++) {
      const i = y * cols + x;
      const face = probabilities.data[plane + i];
      if (!(face >= limit)) continue;
      boxes.push([
        Math.floor(f32((PNET_STRIDE * x + 1) / scale32)),
        Math.floor(f32((PNET_STRIDE * y + 1) / scale32)),
        Math.floor(f32((PNET_STRIDE * x + PNET_CELL) / scale32)),
        Math.floor(f32((PNET_STRIDE * y + PNET_CELL) / scale32)),
      ]);
      scores.push(face);
      offsets.push([0, 1, 2, 3].map((k) => boxOffsets.data[k * plane + i]));
    }
  }
  return { boxes, scores, offsets };
}

/**
 * Greedy non-maximum suppression; returns the kept indices, highest score first. A box is dropped
 * when its overlap with a kept, higher-scoring box exceeds the threshold.
 * overlap "iou": intersection / union; "min": intersection / the smaller area.
 * inclusive counts a width as x2 - x1 + 1 (the original MTCNN code, facenet's last stage) instead
 * of x2 - x1 (torchvision's nms, its first two stages).
 * ties: which of two equal scores goes first, "first" in the input (torchvision's descending
 * sort) or "last" (MTCNN's ascending sort, taken from the end). Face probabilities near 1
 * saturate in float32, so ties are common and the order decides which box survives.
 */
export function nms(boxes, scores, threshold, { overlap = 'iou', inclusive = false, ties = 'first' } = {}) {
  const one = inclusive ? 1 : 0;
  const limit = f32(threshold);
  const areas = boxes.map(([x1, y1, x2, y2]) => f32(f32(f32(x2 - x1) + one) * f32(f32(y2 - y1) + one)));
  let order = scores.map((_, i) => i);
  order.sort((a, b) => scores[b] - scores[a] || (ties === 'first' ? a - b : b - a));
  const keep = [];
  while (order.length > 0) {
    const best = order[0];
    keep.push(best);
    const [bx1, by1, bx2, by2] = boxes[best];
    order = order.slice(1).filter((other) => {
      const [ox1, oy1, ox2, oy2] = boxes[other];
      const width = f32(f32(Math.min(bx2, ox2) - Math.max(bx1, ox1)) + one);
      const height = f32(f32(Math.min(by2, oy2) - Math.max(by1, oy1)) + one);
      const inter = f32(Math.max(width, 0) * Math.max(height, 0));
      const ratio = overlap === 'iou'
        ? f32(inter / f32(f32(areas[best] + areas[other]) - inter))
        : f32(inter / Math.min(areas[best], areas[other]));
      // A NaN ratio (two empty boxes) fails the test and drops the box, as in numpy.
      return ratio <= limit;
    });
  }
  return keep;
}

/**
 * Moves each box edge by its regression offset times the box width or height, measured as
 * x2 - x1 after P-Net and x2 - x1 + 1 after R-Net and O-Net (inclusive), as facenet does.
 */
export function applyOffsets(boxes, offsets, inclusive) {
  const one = inclusive ? 1 : 0;
  return boxes.map(([x1, y1, x2, y2], i) => {
    const w = f32(f32(x2 - x1) + one);
    const h = f32(f32(y2 - y1) + one);
    const [dx1, dy1, dx2, dy2] = offsets[i];
    return [f32(x1 + f32(dx1 * w)), f32(y1 + f32(dy1 * h)), f32(x2 + f32(dx2 * w)), f32(y2 + f32(dy2 * h))];
  });
}

/** Grows each box to a square on its longer side, keeping its centre. */
export function square(boxes) {
  return boxes.map(([x1, y1, x2, y2]) => {
    const w = f32(x2 - x1);
    const h = f32(y2 - y1);
    const side = Math.max(w, h);
    const left = f32(f32(x1 + f32(w * 0.5)) - f32(side * 0.5));
    const top = f32(f32(y1 + f32(h * 0.5)) - f32(side * 0.5));
    return [left, top, f32(left + side), f32(top + side)];
  });
}

/** O-Net landmarks (10 per box: 5 x then 5 y, fractions of the box it saw) -> [[x, y] x 5] pixels. */
export function placeLandmarks(boxes, landmarks) {
  return boxes.map(([x1, y1, x2, y2], i) => {
    const w = f32(f32(x2 - x1) + 1);
    const h = f32(f32(y2 - y1) + 1);
    const points = landmarks[i];
    return [0, 1, 2, 3, 4].map((k) => [
      f32(f32(f32(w * points[k]) + x1) - 1),
      f32(f32(f32(h * points[k + 5]) + y1) - 1),
    ]);
  });
}

const pick = (items, indices) => indices.map((i) => items[i]);

/** Rows of a [N, K] output tensor as arrays. */
function rowsOf(tensor) {
  const width = tensor.dims[1];
  return Array.from({ length: tensor.dims[0] }, (_, i) => Array.from(tensor.data.subarray(i * width, (i + 1) * width)));
}

/** [3, H, W] image (with its rowPrefixSums) and non-empty bounds -> the batch [N, 3, size, size] of
 * area-resized, normalised crops. */
function cropPatches(planar, rowPrefix, bounds, size) {
  const plane = 3 * size * size;
  const data = new Float32Array(bounds.length * plane);
  bounds.forEach((window, k) => {
    data.set(normalizeForNet(areaResize(planar, size, size, rowPrefix, window)).data, k * plane);
  });
  return { data, dims: [bounds.length, 3, size, size] };
}

/** The boxes whose clipped crop is not empty, with their bounds (facenet would raise on one). */
function withNonemptyCrops(planar, boxes) {
  const [, height, width] = planar.dims;
  const bounds = cropBounds(boxes, width, height);
  const kept = bounds.map((b, i) => i).filter((i) => bounds[i][2] > bounds[i][0] && bounds[i][3] > bounds[i][1]);
  return { boxes: pick(boxes, kept), bounds: pick(bounds, kept) };
}

/** Stage 1, P-Net over the pyramid: square candidate boxes. */
async function propose(planar, rowPrefix, runNet, { min_face_size: minFaceSize, thresholds, factor }) {
  const [, height, width] = planar.dims;
  const boxes = [];
  const scores = [];
  const offsets = [];
  for (const scale of pyramidScales(height, width, minFaceSize, factor)) {
    const [levelH, levelW] = pyramidLevelSize(height, width, scale);
    const level = normalizeForNet(areaResize(planar, levelH, levelW, rowPrefix));
    const out = await runNet('pnet', level.data, [1, 3, levelH, levelW]);
    const found = pnetCandidates(out.box_offsets, out.probabilities, scale, thresholds[0]);
    const keep = nms(found.boxes, found.scores, 0.5);
    boxes.push(...pick(found.boxes, keep));
    scores.push(...pick(found.scores, keep));
    offsets.push(...pick(found.offsets, keep));
  }
  const keep = nms(boxes, scores, 0.7);
  return square(applyOffsets(pick(boxes, keep), pick(offsets, keep), false));
}

/** Stage 2, R-Net on 24 x 24 crops: fewer, better square boxes. */
async function refine(planar, rowPrefix, runNet, candidates, threshold) {
  const { boxes, bounds } = withNonemptyCrops(planar, candidates);
  if (boxes.length === 0) return [];
  const patches = cropPatches(planar, rowPrefix, bounds, RNET_SIZE);
  const out = await runNet('rnet', patches.data, patches.dims);
  const scores = rowsOf(out.probabilities).map((p) => p[1]);
  const offsets = rowsOf(out.box_offsets);
  const passed = scores.map((_, i) => i).filter((i) => scores[i] > f32(threshold));
  const keep = pick(passed, nms(pick(boxes, passed), pick(scores, passed), 0.7));
  return square(applyOffsets(pick(boxes, keep), pick(offsets, keep), true));
}

/** Stage 3, O-Net on 48 x 48 crops: final boxes, scores and landmarks. */
async function output(planar, rowPrefix, runNet, candidates, threshold) {
  const { boxes, bounds } = withNonemptyCrops(planar, candidates);
  if (boxes.length === 0) return [];
  const patches = cropPatches(planar, rowPrefix, bounds, ONET_SIZE);
  const out = await runNet('onet', patches.data, patches.dims);
  const allScores = rowsOf(out.probabilities).map((p) => p[1]);
  const passed = allScores.map((_, i) => i).filter((i) => allScores[i] > f32(threshold));
  const passedBoxes = pick(boxes, passed);
  const scores = pick(allScores, passed);
  // Landmarks are relative to the box O-Net saw, so they are placed before the box moves.
  const landmarks = placeLandmarks(passedBoxes, pick(rowsOf(out.landmarks), passed));
  const moved = applyOffsets(passedBoxes, pick(rowsOf(out.box_offsets), passed), true);
  const keep = nms(moved, scores, 0.7, { overlap: 'min', inclusive: true, ties: 'last' });
  return keep.map((i) => ({ box: moved[i], score: scores[i], landmarks: landmarks[i] }));
}

export async function detectFaces(image, runNet, settings) {
  const planar = toPlanar(image);
  const rowPrefix = rowPrefixSums(planar);
  const candidates = await propose(planar, rowPrefix, runNet, settings);
  const refined = await refine(planar, rowPrefix, runNet, candidates, settings.thresholds[1]);
  return output(planar, rowPrefix, runNet, refined, settings.thresholds[2]);
}

/**
 * export/mtcnn.py's pad_photo: the photo surrounded by round(padding * longer side) pixels of its
 * edge pixels, repeated, and that margin. MTCNN cannot find a face that fills the photo.
 */
export function padPhoto(image, padding) {
  const { width, height, data } = image;
  const channels = data.length / (width * height);
  const margin = Math.round(padding * Math.max(width, height));
  if (margin === 0) return { image, margin };
  const outW = width + 2 * margin;
  const outH = height + 2 * margin;
  const out = new Uint8ClampedArray(outW * outH * channels);
  const rowBytes = outW * channels;
  for (let y = 0; y < height; y++) {
    const to = (y + margin) * rowBytes;
    const from = y * width * channels;
    out.set(data.subarray(from, from + width * channels), to + margin * channels);
    for (let c = 0; c < channels; c++) {
      const left = data[from + c];
      const right = data[from + (width - 1) * channels + c];
      for (let x = 0; x < margin; x++) {
        out[to + x * channels + c] = left;
        out[to + (margin + width + x) * channels + c] = right;
      }
    }
  }
  const firstRow = out.subarray(margin * rowBytes, (margin + 1) * rowBytes);
  const lastRow = out.subarray((margin + height - 1) * rowBytes, (margin + height) * rowBytes);
  for (let y = 0; y < margin; y++) {
    out.set(firstRow, y * rowBytes);
    out.set(lastRow, (margin + height + y) * rowBytes);
  }
  return { image: { width: outW, height: outH, data: out }, margin };
}

/**
 * export/mtcnn.py's whole_photo_boxes: squares centred on the photo, of side its shorter side, its
 * longer side and their mean: the ways a photo that is already a face crop frames its face.
 */
export function wholePhotoBoxes(height, width) {
  return [Math.min(height, width), Math.max(height, width), (height + width) / 2].map((side) => {
    const x1 = f32((width - side) / 2);
    const y1 = f32((height - side) / 2);
    return [x1, y1, f32(x1 + side), f32(y1 + side)];
  });
}

/**
 * masklens/face_finder.py's find_faces: the cascade on the padded photo; when it finds nothing and
 * settings.retry_min_face_size is set, the cascade once more for faces down to that size; when that
 * finds nothing either and settings.fallback_threshold is set, O-Net alone judges the squares of
 * wholePhotoBoxes (a photo that is already a face crop). When all that finds nothing and
 * settings.second_look is set, the same steps again with its nets (second_look.nets: {rnet, onet}, the
 * names runNet runs in R-Net's and O-Net's place). Boxes and landmarks come back in pixels of the photo.
 */
export async function findFaces(image, runNet, settings) {
  const { image: padded, margin } = padPhoto(image, settings.padding);
  const cascades = [runNet];
  if (settings.second_look) {
    const { nets } = settings.second_look;
    cascades.push((name, data, dims) => runNet(nets[name] ?? name, data, dims));
  }
  let faces = [];
  for (const run of cascades) {
    if (faces.length > 0) break;
    faces = await findWith(padded, image, margin, run, settings);
  }
  return faces.map(({ box, score, landmarks }) => ({
    box: box.map((v) => f32(v - margin)),
    score,
    landmarks: landmarks.map(([x, y]) => [f32(x - margin), f32(y - margin)]),
  }));
}

/** One cascade's steps of findFaces, on the padded photo: its faces in pixels of the padded photo. */
async function findWith(padded, image, margin, runNet, settings) {
  let faces = await detectFaces(padded, runNet, settings);
  const retry = settings.retry_min_face_size;
  if (faces.length === 0 && retry !== null && retry !== undefined) {
    faces = await detectFaces(padded, runNet, { ...settings, min_face_size: retry });
  }
  if (faces.length === 0 && settings.fallback_threshold !== null && settings.fallback_threshold !== undefined) {
    const candidates = wholePhotoBoxes(image.height, image.width).map((box) => box.map((v) => f32(v + margin)));
    const planar = toPlanar(padded);
    faces = await output(planar, rowPrefixSums(planar), runNet, candidates, settings.fallback_threshold);
  }
  return faces;
}

/**
 * runNet over onnxruntime-web: sessions maps a net name to its InferenceSession; each net has one
 * input (the MTCNN nets' and the classifier's are all named "image" in the manifest).
 */
export function createOrtRunner(ort, sessions) {
  return async (name, data, dims) => {
    const session = sessions[name];
    if (!session) throw new Error(`no session for net "${name}"`);
    const outputs = await session.run({ [session.inputNames[0]]: new ort.Tensor('float32', data, dims) });
    return Object.fromEntries(Object.entries(outputs)
      .map(([key, tensor]) => [key, { data: tensor.data, dims: tensor.dims }]));
  };
}

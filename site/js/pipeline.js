// A photo in, the faces found and classified out: export/predict.py's Predictor.predict_photo
// followed by describe, over injected nets (see mtcnn.js's createOrtRunner).
//
// preparePhoto(image, inputLimits) -> RGB image: what open_photo does after decoding (alpha
//   dropped, the longer side brought to at most inputLimits.max_side by Pillow's thumbnail).
// analysePhoto(image, {manifest, runNet, wholeImage}) -> Promise<[face]>, highest detector score first
//   image: {width, height, data} RGB or RGBA (imaging.js; alpha is dropped); manifest: the parsed manifest.json;
//   runNet(name, data, dims): runs the face detector's nets (mtcnn.js: "pnet", "rnet", "onet", and the second
//     look's "rnet_masked", "onet_masked"), "classifier" and "classifier_live"
//     ([N, 3, S, S] -> logits, reason_logits and, per target layer L, L_activations and L_weights);
//   wholeImage: treat the photo itself as one face crop, without the detector.
//   face, with describe's keys (unrounded) so browser and CLI records read alike:
//     box, score, landmarks ([] in wholeImage mode), crop_box: as in mtcnn.js, pixels of image;
//     class: the most probable class name; cant_tell: abstention.js's reason for no verdict, or null;
//     probabilities: {class: p}, calibrated (abstention.js);
//     reason: the most probable reason name when class is "incorrect", else null;
//     reason_probabilities: {reason: p};
//     heatmaps: {layer: {data: Float32Array, dims: [classes, h, w]}}, coarse maps in [0, 1];
//     crop: the S x S RGB crop the classifier saw.
// classifyFaces(image, faces, {manifest, runNet, live}) -> analysePhoto's faces for given detections
//   ({box, score, landmarks}): the webcam mode classifies tracked faces with it, live: true (the
//   forward-only graph; heatmaps of manifest.classifier.webcam.target_layers only).
// findLiveFaces(frame, runNet, manifest, minFaceSize) -> [{box, score}] of a webcam frame (export/tracking.py's
//   rule; minFaceSize in frame pixels, by default manifest.tracking.min_face_size).
// overlays(face, manifest) -> {layer: RGB image}: the predicted class's heatmap on the crop.

import { abstentionRule, calibratedSoftmax, cantTell } from './abstention.js';
import { gradcamFromOutputs, overlayHeatmap, parseColormap, softmax, upsampleCam } from './gradcam.js';
import { cropBoxForFace, cropFace, resizeBilinear, thumbnail, toRGB } from './imaging.js';
import { findFaces } from './mtcnn.js';
import { normalizeCrops } from './preprocess.js';

export function preparePhoto(image, inputLimits) {
  if (image.width * image.height > inputLimits.max_pixels) {
    throw new Error(`photo too large: ${image.width} x ${image.height} pixels `
      + `(limit ${Math.round(inputLimits.max_pixels / 1e6)} megapixels)`);
  }
  return thumbnail(toRGB(image), inputLimits.max_side);
}

/** Index of the largest value; the first one on ties, as numpy's argmax. */
function argmax(values) {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/**
 * Per crop: class probabilities, reason probabilities and coarse maps per layer ([classes, h, w]); live:
 * through the webcam mode's forward-only graph ("classifier_live"), whose layers are manifest.classifier.webcam's.
 */
async function predictCrops(crops, manifest, runNet, live) {
  const { classifier, classes } = manifest;
  const input = normalizeCrops(crops, classifier.preprocessing);
  const outputs = await runNet(live ? 'classifier_live' : 'classifier', input.data, input.dims);
  const targetLayers = live ? classifier.webcam.target_layers : classifier.target_layers;
  const probabilities = calibratedSoftmax(outputs.logits, abstentionRule(manifest).temperature);
  const reasonProbabilities = softmax(outputs.reason_logits);
  const reasons = outputs.reason_logits.dims[1];
  const maps = {};
  for (const layer of targetLayers) {
    const activations = outputs[`${layer}_activations`];
    const weights = outputs[`${layer}_weights`].data;
    maps[layer] = classes.map((_, k) => gradcamFromOutputs(activations.data, weights, activations.dims, k));
  }
  return crops.map((_, i) => ({
    probabilities: probabilities.subarray(i * classes.length, (i + 1) * classes.length),
    reasonProbabilities: reasonProbabilities.subarray(i * reasons, (i + 1) * reasons),
    heatmaps: Object.fromEntries(Object.entries(maps).map(([layer, perClass]) => {
      const [, h, w] = perClass[0].dims;
      const data = new Float32Array(classes.length * h * w);
      perClass.forEach((cam, k) => data.set(cam.data.subarray(i * h * w, (i + 1) * h * w), k * h * w));
      return [layer, { data, dims: [classes.length, h, w] }];
    })),
  }));
}

/** Faces with their crops -> the faces described, each with class, probabilities, reason and heatmaps. */
async function classifyCropped(faces, manifest, runNet, live = false) {
  if (faces.length === 0) return [];
  const predictions = await predictCrops(faces.map((face) => face.crop), manifest, runNet, live);
  const { classes, reasons } = manifest;
  const rule = abstentionRule(manifest);
  return faces.map((face, i) => {
    const { probabilities, reasonProbabilities, heatmaps } = predictions[i];
    const predicted = classes[argmax(probabilities)];
    return {
      box: face.box,
      score: face.score,
      landmarks: face.landmarks,
      crop_box: face.crop_box,
      class: predicted,
      cant_tell: cantTell(probabilities, face.box, rule),
      probabilities: Object.fromEntries(classes.map((name, k) => [name, probabilities[k]])),
      reason: predicted === 'incorrect' ? reasons[argmax(reasonProbabilities)] : null,
      reason_probabilities: Object.fromEntries(reasons.map((name, k) => [name, reasonProbabilities[k]])),
      heatmaps,
      crop: face.crop,
    };
  });
}

/** Detected faces ({box, ...}) -> the same faces cropped as trained and classified (analysePhoto's faces). */
export async function classifyFaces(image, faces, { manifest, runNet, live = false }) {
  const rgb = toRGB(image);
  const { framing } = manifest.face_crop;
  const size = manifest.classifier.preprocessing.size;
  const cropped = faces.map((face) => ({
    ...face,
    crop_box: cropBoxForFace(face.box, framing),
    crop: cropFace(rgb, face.box, framing, size),
  }));
  return classifyCropped(cropped, manifest, runNet, live);
}

/**
 * The faces of a webcam frame (export/tracking.py's rule): found on the frame scaled down to
 * manifest.tracking.detect_max_side, looking for faces of minFaceSize frame pixels, boxes in frame pixels;
 * without the photo rule's retry and second look, each of which would double the cost of an empty frame.
 */
export async function findLiveFaces(frame, runNet, manifest, minFaceSize = manifest.tracking.min_face_size) {
  const rgb = toRGB(frame);
  const small = thumbnail(rgb, manifest.tracking.detect_max_side);
  const scaleX = rgb.width / small.width;
  const scaleY = rgb.height / small.height;
  const settings = {
    ...manifest.face_detector,
    min_face_size: (minFaceSize * small.width) / rgb.width,
    retry_min_face_size: null,
    second_look: null,
  };
  // float32 boxes, as export/video.py keeps them, so that both crop the same pixels.
  return (await findFaces(small, runNet, settings)).map(({ box, score }) => ({
    box: [box[0] * scaleX, box[1] * scaleY, box[2] * scaleX, box[3] * scaleY].map(Math.fround),
    score,
  }));
}

export async function analysePhoto(image, { manifest, runNet, wholeImage = false }) {
  const rgb = toRGB(image);
  if (wholeImage) {
    const size = manifest.classifier.preprocessing.size;
    const full = [0, 0, rgb.width, rgb.height];
    const face = { box: full, score: 1, landmarks: [], crop_box: full, crop: resizeBilinear(rgb, size, size) };
    return classifyCropped([face], manifest, runNet);
  }
  return classifyFaces(rgb, await findFaces(rgb, runNet, manifest.face_detector), { manifest, runNet });
}

export function overlays(face, manifest) {
  const classIndex = manifest.classes.indexOf(face.class);
  const colormap = parseColormap(manifest.drawing.colormap);
  const { width, height } = face.crop;
  return Object.fromEntries(Object.entries(face.heatmaps).map(([layer, maps]) => {
    const [, h, w] = maps.dims;
    const coarse = { data: maps.data.subarray(classIndex * h * w, (classIndex + 1) * h * w), dims: [1, h, w] };
    const cam = upsampleCam(coarse, { width, height });
    return [layer, overlayHeatmap(face.crop, cam.data, colormap, manifest.drawing.image_weight)];
  }));
}

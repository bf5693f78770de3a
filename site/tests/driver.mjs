// Runs the site's modules on inputs from Python, for tests/test_js_parity.py.
//
//   node tests/driver.mjs request.json response.json
//
// request: {op, ...}; binary arrays travel as base64 of their little-endian bytes:
//   images as {width, height, data: base64 of uint8}, float arrays as base64 of float32.
// - op "calls": {calls: [{fn, args}]} runs pure functions, answering one result per call:
//     resize {image, width, height}, thumbnail {image, max_side}, crop_face {image, box, framing,
//     size} (also answers crop_box), gradcam {activations, weights, dims, class_index, size},
//     softmax {logits, dims}, normalize {crops, preprocessing}, overlay {crop, cam, colormap,
//     image_weight}, track {rule, classes, reasons, rounds: [{boxes, probabilities, reason_probabilities}]}
//     (per round: the track id of each box, the live track ids, each box's track label), follow {frames,
//     boxes} (follow.js from the boxes of frames[0], gray frames made as the page makes them but scaled
//     with thumbnail: the boxes on each later frame).
// - op "detect": {models, settings, photos: [image]} -> per photo the faces of findFaces.
// - op "live": {models, frames: [image]} -> per frame the webcam mode's faces (findLiveFaces, then
//     classifyFaces through the live classifier): box, crop_box, probabilities, heatmaps (nested lists).
// - op "analyse": {models, photos: [{image, whole_image}]} -> per photo analysePhoto's faces, with
//     the manifest read from models/manifest.json; heatmaps as nested lists, crops as images.
// Every manifest read is validated against masklens/manifest.schema.json first (manifest.js), as the
// worker does.
// The ONNX ops run onnxruntime-web's wasm backend on one thread.

import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { gradcamFromOutputs, overlayHeatmap, parseColormap, softmax, upsampleCam } from '../js/gradcam.js';
import { cropBoxForFace, cropFace, resizeBilinear, thumbnail } from '../js/imaging.js';
import { FOLLOW_WIDTH, Follower, grayFrame } from '../js/follow.js';
import { createOrtRunner, findFaces } from '../js/mtcnn.js';
import { analysePhoto, classifyFaces, findLiveFaces } from '../js/pipeline.js';
import { validateManifest } from '../js/manifest.js';
import { normalizeCrops } from '../js/preprocess.js';
import { Tracker } from '../js/tracking.js';

const bytes = (b64) => new Uint8Array(Buffer.from(b64, 'base64'));
const floats = (b64) => {
  const raw = Buffer.from(b64, 'base64');
  return new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
};
const encode = (typed) => Buffer.from(typed.buffer, typed.byteOffset, typed.byteLength).toString('base64');
const decodeImage = ({ width, height, data }) => ({ width, height, data: new Uint8ClampedArray(bytes(data)) });
const encodeImage = ({ width, height, data }) => ({ width, height, data: encode(data) });

const calls = {
  resize: ({ image, width, height }) => encodeImage(resizeBilinear(decodeImage(image), width, height)),
  thumbnail: ({ image, max_side: maxSide }) => encodeImage(thumbnail(decodeImage(image), maxSide)),
  crop_face: ({ image, box, framing, size }) => ({
    crop: encodeImage(cropFace(decodeImage(image), box, framing, size)),
    crop_box: cropBoxForFace(box, framing),
  }),
  gradcam: ({ activations, weights, dims, class_index: classIndex, size }) => {
    const coarse = gradcamFromOutputs(floats(activations), floats(weights), dims, classIndex);
    const fine = upsampleCam(coarse, { width: size[0], height: size[1] });
    return { coarse: encode(coarse.data), upsampled: encode(fine.data) };
  },
  softmax: ({ logits, dims }) => encode(softmax({ data: floats(logits), dims })),
  normalize: ({ crops, preprocessing }) => encode(normalizeCrops(crops.map(decodeImage), preprocessing).data),
  overlay: ({ crop, cam, colormap, image_weight: imageWeight }) =>
    encodeImage(overlayHeatmap(decodeImage(crop), floats(cam), parseColormap(colormap), imageWeight)),
  follow: ({ frames, boxes }) => {
    const gray = frames.map((frame) => grayFrame(thumbnail(decodeImage(frame), FOLLOW_WIDTH)));
    const follower = new Follower();
    follower.reset(gray[0], boxes.map((box) => ({ box, crop_box: null })), gray[0].width / frames[0].width);
    return gray.slice(1).map((frame) => follower.follow(frame).map((track) => track.box));
  },
  track: ({ rule, classes, reasons, rounds }) => {
    const tracker = new Tracker(rule, classes, reasons);
    return rounds.map(({ boxes, probabilities, reason_probabilities: reasonProbabilities }) => {
      const tracks = tracker.update(boxes);
      tracks.forEach((track, i) => tracker.observe(track, probabilities[i], reasonProbabilities[i]));
      return { ids: tracks.map((track) => track.id), live: tracker.tracks.map((track) => track.id),
        labels: tracks.map((track) => tracker.label(track)) };
    });
  },
};

const SCHEMA = JSON.parse(await readFile(new URL('../../masklens/manifest.schema.json', import.meta.url), 'utf8'));

/** The model folder's manifest, validated as worker.js validates it (manifest.js). */
async function readManifest(models) {
  const manifest = JSON.parse(await readFile(join(models, 'manifest.json'), 'utf8'));
  validateManifest(manifest, SCHEMA);
  return manifest;
}

/** Sessions over the model folder's files, as worker.js opens them on wasm: every face detector net of the
 * manifest, and these classifiers (the live classifier is the int8 graph, with its own weights). */
async function ortRunner(models, classifiers) {
  const ort = await import('onnxruntime-web');
  ort.env.wasm.numThreads = 1;
  const { classifier, face_detector: detector } = await readManifest(models);
  const files = {
    classifier: classifier.file,
    classifier_live: classifier.webcam.file,
    ...Object.fromEntries(Object.entries(detector.nets).map(([name, net]) => [name, net.file])),
  };
  const sessions = {};
  for (const name of [...Object.keys(detector.nets), ...classifiers]) {
    sessions[name] = await ort.InferenceSession.create(join(models, files[name]));
  }
  return createOrtRunner(ort, sessions);
}

const toList = (tensor) => {
  const [count, h, w] = tensor.dims;
  return Array.from({ length: count }, (_, k) => Array.from({ length: h },
    (_, y) => Array.from(tensor.data.subarray((k * h + y) * w, (k * h + y + 1) * w))));
};

const ops = {
  calls: async ({ calls: list }) => list.map(({ fn, args }) => calls[fn](args)),
  detect: async ({ models, settings, photos }) => {
    const runNet = await ortRunner(models, []);
    const results = [];
    for (const photo of photos) results.push(await findFaces(decodeImage(photo), runNet, settings));
    return results;
  },
  live: async ({ models, frames }) => {
    const manifest = await readManifest(models);
    const runNet = await ortRunner(models, ['classifier_live']);
    const results = [];
    for (const frame of frames) {
      const image = decodeImage(frame);
      const faces = await findLiveFaces(image, runNet, manifest);
      const classified = await classifyFaces(image, faces, { manifest, runNet, live: true });
      results.push(classified.map(({ box, crop_box: cropBox, probabilities, heatmaps }) => ({
        box, crop_box: cropBox, probabilities,
        heatmaps: Object.fromEntries(Object.entries(heatmaps).map(([layer, maps]) => [layer, toList(maps)])),
      })));
    }
    return results;
  },
  analyse: async ({ models, photos }) => {
    const manifest = await readManifest(models);
    const runNet = await ortRunner(models, ['classifier']);
    const results = [];
    for (const { image, whole_image: wholeImage } of photos) {
      const faces = await analysePhoto(decodeImage(image), { manifest, runNet, wholeImage });
      results.push(faces.map((face) => ({
        ...face,
        heatmaps: Object.fromEntries(Object.entries(face.heatmaps).map(([layer, maps]) => [layer, toList(maps)])),
        crop: encodeImage(face.crop),
      })));
    }
    return results;
  },
};

const [requestPath, responsePath] = process.argv.slice(2);
const request = JSON.parse(await readFile(requestPath, 'utf8'));
const started = performance.now();
const result = await ops[request.op](request);
await writeFile(responsePath, JSON.stringify({ result, seconds: (performance.now() - started) / 1000 }));

// The Web Worker that does all the work: loads the manifest (validated against its JSON Schema by
// manifest.js before anything else reads it) and the ONNX models (checked against the manifest's
// sha256), decodes photos and runs pipeline.js's analysePhoto. Nothing leaves the device:
// every file comes from this site, and photos are only read from the Blob the page hands over.
//
// Messages in (from session.js):
//   {type: "load", modelsUrl, backend}        modelsUrl: absolute URL of the folder holding manifest.json;
//       backend: "webgpu" or "wasm" to ask for one (see chooseBackend), else null. Loads what a photo
//       check needs: the face detector and the classifier (the face detector's second look, where the
//       manifest has one, when a photo first needs it)
//   {type: "load-webcam", id}                 loads the webcam's classifier (once; before live-classify)
//   {type: "analyse", id, blob, wholeImage}   blob: the photo file; wholeImage: skip the face detector
//   {type: "live-frame", id, frame, detect, minFaceSize}   frame: an ImageBitmap of a webcam frame
//       (transferred), kept for the next live-classify; detect: find its faces (pipeline.js's
//       findLiveFaces, smallest face minFaceSize frame pixels, default the manifest's tracking.min_face_size)
//   {type: "live-classify", id, boxes}        classify the faces at these boxes of the last live frame
//       (the live classifier: forward only, heatmaps of its target layers, block8)
// Messages out:
//   {type: "progress", stage, loaded, total, file}   bytes read so far (from the network or the cache) of
//       the models, and the runtime's wasm binary, of stage "photo" (load), or of the models of "webcam" (load-webcam)
//   {type: "ready", manifest, fromCache, runtime}   models loaded and verified; fromCache: no model was
//       downloaded; runtime: {backend: "webgpu" | "wasm", threads}: the classifiers' backend (the face
//       detector's nets always run on wasm); threads > 1 only when cross-origin isolated
//   {type: "webcam-ready", id, fromCache}     the webcam's classifier is loaded
//   {type: "result", id, photo, faces, wholeImage}
//       photo: {width, height, data: Uint8ClampedArray RGB}, the photo as analysed (EXIF-rotated, scaled
//       down to manifest.input_limits.max_side); faces: analysePhoto's faces (pipeline.js), [] if none
//   {type: "live-faces", id, width, height, faces}   faces: [{box, score}] (detect), else null
//   {type: "live-classes", id, faces, runMs}  classifyFaces' faces (pipeline.js), without their crops; runMs:
//       the time the classifier's onnxruntime session took (the rest of the call is cropping, Grad-CAM
//       maths and messaging)
//   {type: "error", id, stage, message, unexpected}   stage: "load", "analyse" or "live"; message: plain words
//       (a manifest that breaks the schema, or of another format, is a "load" error naming the field);
//       unexpected: true for a fault of this worker rather than of the input (anything but a PlainError or
//       a ManifestError), after which the page starts a new worker rather than trust this one's state
//
// Models are cached with the Cache API under a key made of their sha256, so a second visit reads them
// from the cache; a cached copy is checked against the sha256 again before use.
//
// onnxruntime-web comes in two builds, loaded on demand: the wasm-only one, and the WebGPU one (which
// also runs wasm) when the page asks for it (?backend=webgpu). There both classifiers run on the GPU,
// the full one from manifest.classifier.gpu's graph (its Grad-CAM backward pass through max pooling
// without the pooling's indices, which onnxruntime's WebGPU MaxPool does not give). The face detector's
// nets stay on wasm: they are tiny, with a new input size at every pyramid level.

import { toRGB } from './imaging.js';
import { ManifestError, readManifest } from './manifest.js';
import { createOrtRunner } from './mtcnn.js';
import { sessionOptions } from './ortoptions.js';
import { HEADER_BYTES, photoHeader } from './photofile.js';
import { analysePhoto, classifyFaces, findLiveFaces, preparePhoto } from './pipeline.js';

const CACHE_NAME = 'masklens-models-v1';
// What each mode loads besides the face detector's nets, per backend, so that a photo check downloads only
// the face detector, the one classifier and one onnxruntime-web build. On wasm the webcam classifier is the int8 graph
// (manifest.classifier.webcam.file, export/quantize.py); WebGPU runs the full classifier and the webcam one
// from fp32 graphs. A graph with a weights_file reads its weights from the classifier's bytes (ONNX external
// data). The webcam's graph is loaded when the camera is first started (load-webcam).
const PHOTO_NETS = { wasm: ['classifier'], webgpu: ['classifier', 'classifier_gpu'] };
const WEBCAM_NETS = { wasm: ['classifier_live'], webgpu: ['classifier_live_gpu'] };
const ORT_BUILDS = { wasm: '../ort/ort.wasm.min.mjs', webgpu: '../ort/ort.webgpu.min.mjs' };
// The wasm binary each build runs (scripts/build_site.py's ORT_FILES), handed to it as env.wasm.wasmBinary.
const ORT_WASM = { wasm: 'ort-wasm-simd-threaded.wasm', webgpu: 'ort-wasm-simd-threaded.asyncify.wasm' };
// Threads need SharedArrayBuffer, which only a cross-origin isolated page (and so its workers) has.
const THREADS = self.crossOriginIsolated ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) : 1;
let state = null; // {manifest, runNet}
let liveFrame = null; // the last webcam frame, RGB {width, height, data}

class PlainError extends Error {}

const hex = (buffer) => Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, '0')).join('');

async function sha256(bytes) {
  return hex(await crypto.subtle.digest('SHA-256', bytes));
}

function fileOf(manifest, net) {
  if (net === 'classifier') return manifest.classifier.file;
  if (net === 'classifier_live') return manifest.classifier.webcam.file;
  if (net === 'classifier_gpu') return manifest.classifier.gpu.file;
  if (net === 'classifier_live_gpu') return manifest.classifier.webcam.gpu.file;
  return manifest.face_detector.nets[net].file;
}

async function openCache() {
  try {
    return typeof caches === 'undefined' ? null : await caches.open(CACHE_NAME);
  } catch {
    return null; // private modes may refuse storage: work without a cache
  }
}

const cacheKey = (sha) => new URL(`masklens-model/${sha}`, self.location.origin).href;

/** A response's body, counted into progress as it arrives. */
async function readBody(response, report) {
  const reader = response.body.getReader();
  const chunks = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.length;
    report(value.length);
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) { bytes.set(chunk, offset); offset += chunk.length; }
  return bytes;
}

/** Posts the bytes read so far, of all the files one stage reads, as progress messages. */
function progressOf(stage, total) {
  let loaded = 0;
  return (file) => (n) => {
    loaded += n;
    self.postMessage({ type: 'progress', stage, loaded, total, file });
  };
}

const modelBytes = (manifest, nets) => nets.reduce((sum, net) => sum + (manifest.files[fileOf(manifest, net)]?.bytes ?? 0), 0);

/**
 * onnxruntime-web's wasm binary for a build, from Cache Storage (under the onnxruntime-web version, so an
 * upgrade fetches the new one) or the network: a second visit downloads no model and no runtime. Opened
 * before it is read, so that its size counts into the progress total. -> {size, read(report) -> bytes}
 */
async function openRuntimeBinary(ort, build, cache) {
  const name = ORT_WASM[build];
  const key = new URL(`masklens-runtime/${ort.env.versions.web}/${name}`, self.location.origin).href;
  const hit = cache ? await cache.match(key) : null;
  if (hit) {
    const bytes = new Uint8Array(await hit.arrayBuffer());
    return { size: bytes.length, read: async (report) => { report(bytes.length); return bytes; } };
  }
  const response = await fetch(new URL(`../ort/${name}`, import.meta.url).href);
  if (!response.ok) throw new PlainError(`Could not download the checker's runtime ${name} (HTTP ${response.status}).`);
  return {
    size: Number(response.headers.get('content-length')) || 0,
    read: async (report) => {
      const bytes = await readBody(response, report);
      try {
        await cache?.put(key, new Response(bytes, { headers: { 'content-type': 'application/wasm' } }));
      } catch { /* quota full: keep going without caching */ }
      return bytes;
    },
  };
}

/** The bytes of one model, from the cache or the network, counted into progress as they arrive. */
async function readModel(url, expected, cache, report) {
  if (cache) {
    const hit = await cache.match(cacheKey(expected.sha256));
    if (hit) {
      const bytes = new Uint8Array(await hit.arrayBuffer());
      if (await sha256(bytes) === expected.sha256) {
        report(bytes.length);
        return { bytes, cached: true };
      }
      await cache.delete(cacheKey(expected.sha256));
    }
  }
  const response = await fetch(url, { cache: 'no-cache' });
  if (!response.ok) throw new PlainError(`Could not download the model ${url.split('/').pop()} (HTTP ${response.status}).`);
  const bytes = await readBody(response, report);
  return { bytes, cached: false };
}

/**
 * "webgpu" when asked for (?backend=webgpu) and the browser has a WebGPU adapter (a software one too),
 * else "wasm": the WebGPU build is twice the download of the wasm one, and the compact classifier runs a
 * face in a few dozen milliseconds on wasm.
 */
async function chooseBackend(requested) {
  if (requested !== 'webgpu' || !self.navigator?.gpu) return 'wasm';
  try {
    return (await navigator.gpu.requestAdapter()) ? 'webgpu' : 'wasm';
  } catch {
    return 'wasm';
  }
}

async function loadRuntime(backend) {
  const ort = await import(new URL(ORT_BUILDS[backend], import.meta.url).href);
  ort.env.wasm.wasmPaths = new URL('../ort/', import.meta.url).href;
  ort.env.wasm.numThreads = THREADS;
  ort.env.wasm.proxy = false;
  ort.env.logLevel = 'error';
  return ort;
}

/**
 * The bytes of these nets' files, checked against the manifest's sha256 and cached; progress(file)(n) counts
 * every byte read, from the network or the cache. -> {bytesOf: {net: Uint8Array}, allCached}
 */
async function readModels(nets, { manifest, base, cache }, progress) {
  const files = Object.fromEntries(nets.map((net) => [net, fileOf(manifest, net)]));
  let allCached = true;
  const bytesOf = {};
  for (const [net, file] of Object.entries(files)) {
    const expected = manifest.files[file];
    if (!expected) throw new PlainError(`The model description does not list ${file}; the site is incomplete.`);
    const { bytes, cached } = await readModel(new URL(file, base).href, expected, cache, progress(file));
    allCached &&= cached;
    if (!cached) {
      if (await sha256(bytes) !== expected.sha256) {
        throw new PlainError(`The model file ${file} is not the one this site was built with (its checksum differs), `
          + 'so it was not used. Reload the page; if this persists, the site needs to be rebuilt.');
      }
      if (cache) {
        try {
          await cache.put(cacheKey(expected.sha256), new Response(bytes, { headers: { 'content-type': 'application/octet-stream' } }));
        } catch { /* quota full: keep going without caching */ }
      }
    }
    bytesOf[net] = bytes;
  }
  return { bytesOf, allCached };
}

/** Creates sessions; a graph with a weights_file (manifest) reads its weights from the classifier's bytes;
 * integerArithmetic for the statically quantized webcam graph. */
function sessionFactory(ort, classifierBytes) {
  return (bytes, provider, graph = null, integerArithmetic = false) => ort.InferenceSession.create(bytes, {
    ...sessionOptions(provider, { integerArithmetic }),
    ...(graph?.weights_file ? { externalData: [{ path: graph.weights_file, data: classifierBytes }] } : {}),
  });
}

async function load(modelsUrl, requestedBackend) {
  // The manifest first, checked against its schema before anything reads it (manifest.js): one of
  // another version or shape is refused here, naming the field.
  const manifest = await readManifest(modelsUrl);
  const base = modelsUrl.endsWith('/') ? modelsUrl : `${modelsUrl}/`;
  // build: the onnxruntime-web build loaded; backend: where the classifiers run.
  const build = await chooseBackend(requestedBackend);
  let backend = build;
  const ort = await loadRuntime(build);
  const where = { manifest, base, cache: await openCache() };
  // The face detector's stock nets; the second look's are read when a photo first needs them (loadSecondLook).
  const later = secondLookNets(manifest);
  const detectorNets = Object.keys(manifest.face_detector.nets).filter((net) => !later.includes(net));
  const nets = [...detectorNets, ...PHOTO_NETS[build]];
  const runtime = await openRuntimeBinary(ort, build, where.cache);
  const progress = progressOf('photo', runtime.size + modelBytes(manifest, nets));
  ort.env.wasm.wasmBinary = await runtime.read(progress(ORT_WASM[build]));
  const { bytesOf, allCached } = await readModels(nets, where, progress);
  const create = sessionFactory(ort, bytesOf.classifier);
  const sessions = {};
  for (const net of detectorNets) sessions[net] = await create(bytesOf[net], 'wasm');
  if (build === 'webgpu') {
    try {
      sessions.classifier = await create(bytesOf.classifier_gpu, 'webgpu', manifest.classifier.gpu);
    } catch {
      backend = 'wasm'; // the GPU refused (out of memory, a lost device): the same build runs them on wasm
    }
  }
  sessions.classifier ??= await create(bytesOf.classifier, 'wasm');
  const runLoaded = createOrtRunner(ort, sessions);
  const runNet = async (name, data, dims) => {
    if (!sessions[name] && later.includes(name)) await loadSecondLook();
    return runLoaded(name, data, dims);
  };
  state = { manifest, build, backend, where, create, sessions, runNet };
  return { manifest, fromCache: allCached, runtime: { backend, threads: THREADS } };
}

/** The nets of the face finder's second look (manifest.face_detector.second_look), [] without one. */
const secondLookNets = (manifest) => Object.values(manifest.face_detector.second_look?.nets ?? {});

/**
 * The second look's R-Net and O-Net (2 MB), read (from the cache or the network, checked like every model)
 * the first time the stock nets find no face in a photo: a visit whose photos all have a face the stock nets
 * find downloads them not at all. Quietly, without progress messages: the page is already saying "checking".
 */
async function loadSecondLook() {
  const { where, create, sessions } = state;
  const nets = secondLookNets(where.manifest).filter((net) => !sessions[net]);
  const { bytesOf } = await readModels(nets, where, () => () => {});
  for (const net of nets) sessions[net] ??= await create(bytesOf[net], 'wasm');
}

/** The webcam's classifier, loaded once, when the camera first starts: -> {fromCache} */
async function loadWebcam() {
  if (!state) throw new PlainError('The models are not loaded yet.');
  const { manifest, build, backend, where, create, sessions } = state;
  if (sessions.classifier_live) return { fromCache: true };
  const nets = WEBCAM_NETS[build];
  const { bytesOf, allCached } = await readModels(nets, where, progressOf('webcam', modelBytes(manifest, nets)));
  // The WebGPU build runs the webcam's fp32 graph, on wasm too where the GPU refused the classifier.
  sessions.classifier_live = build === 'wasm'
    ? await create(bytesOf.classifier_live, 'wasm', null, true)
    : await create(bytesOf.classifier_live_gpu, backend, manifest.classifier.webcam.gpu);
  return { fromCache: allCached };
}

/** An ImageBitmap's RGBA pixels {width, height, data}. */
function pixelsOf(bitmap) {
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext('2d', { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0);
  return { width: bitmap.width, height: bitmap.height, data: context.getImageData(0, 0, bitmap.width, bitmap.height).data };
}

/** How far a JPEG decoder's draft mode would scale down (powers of two), as Pillow's draft does. */
function draftSize(width, height, maxSide) {
  let scale = 1;
  while (scale < 8 && Math.floor(width / (scale * 2)) >= maxSide && Math.floor(height / (scale * 2)) >= maxSide) scale *= 2;
  return [Math.ceil(width / scale), Math.ceil(height / scale)];
}

function tooLarge(width, height, limits) {
  return new PlainError(`This photo is too large (${width} × ${height} pixels; `
    + `the limit is ${Math.round(limits.max_pixels / 1e6)} megapixels).`);
}

// Formats a browser may not decode, by the name a person knows them by.
const FORMAT_NAMES = { heic: 'HEIC', avif: 'AVIF', webp: 'WebP' };

/**
 * Blob -> RGBA pixels, EXIF orientation applied; very large photos are decoded scaled down. The header
 * (photofile.js) is read first: a file that is no photo, or whose stated size is over the limit, is refused
 * before any decoding.
 */
async function decode(blob, limits) {
  const header = photoHeader(new Uint8Array(await blob.slice(0, HEADER_BYTES).arrayBuffer()));
  if (header.format === 'svg') {
    throw new PlainError('This file is an SVG drawing, not a photo. Save it as a PNG or JPEG image and try again.');
  }
  if (header.format === 'pdf') throw new PlainError('This file is a PDF document, not an image.');
  if (header.width !== null && header.width * header.height > limits.max_pixels) {
    throw tooLarge(header.width, header.height, limits);
  }
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob, { imageOrientation: 'from-image' });
  } catch {
    const name = FORMAT_NAMES[header.format];
    if (name) throw new PlainError(`This is a ${name} photo, which this browser cannot open. Save it as JPEG and try again.`);
    throw new PlainError('This file could not be opened as an image. It may not be a photo, or it may be damaged.');
  }
  try {
    if (bitmap.width * bitmap.height > limits.max_pixels) throw tooLarge(bitmap.width, bitmap.height, limits);
    let [width, height] = [bitmap.width, bitmap.height];
    if (Math.max(width, height) > 2 * limits.max_side) {
      [width, height] = draftSize(width, height, limits.max_side);
      const scaled = await createImageBitmap(bitmap, { resizeWidth: width, resizeHeight: height, resizeQuality: 'high' });
      bitmap.close();
      bitmap = scaled;
    }
    return pixelsOf(bitmap);
  } finally {
    bitmap.close();
  }
}

async function analyse({ blob, wholeImage }) {
  if (!state) throw new PlainError('The models are not loaded yet.');
  const { manifest, runNet } = state;
  if (!blob || blob.size === 0) throw new PlainError('This file is empty.');
  const photo = preparePhoto(await decode(blob, manifest.input_limits), manifest.input_limits);
  const faces = await analysePhoto(photo, { manifest, runNet, wholeImage });
  return { photo, faces };
}

async function liveStep(message) {
  if (!state) throw new PlainError('The models are not loaded yet.');
  const { manifest, runNet } = state;
  if (message.type === 'live-frame') {
    // Video frames come upright and camera-sized: no orientation or scaling. RGB once, for both steps.
    try {
      liveFrame = toRGB(pixelsOf(message.frame));
    } finally {
      message.frame.close();
    }
    const faces = message.detect ? await findLiveFaces(liveFrame, runNet, manifest, message.minFaceSize) : null;
    return { type: 'live-faces', id: message.id, width: liveFrame.width, height: liveFrame.height, faces };
  }
  if (!liveFrame) throw new PlainError('No camera frame yet.');
  let runMs = 0;
  const timedRunNet = async (...args) => {
    const started = performance.now();
    try {
      return await runNet(...args);
    } finally {
      runMs += performance.now() - started;
    }
  };
  const faces = await classifyFaces(liveFrame, message.boxes.map((box) => ({ box, score: null, landmarks: [] })),
    { manifest, runNet: timedRunNet, live: true });
  return { type: 'live-classes', id: message.id, faces: faces.map(({ crop, ...face }) => face), runMs };
}

const expected = (error) => error instanceof PlainError || error instanceof ManifestError;
const plain = (error, fallback) => (expected(error) ? error.message : `${fallback} (${error?.message ?? error})`);

async function handle(message) {
  if (message.type === 'load') {
    try {
      const { manifest, fromCache, runtime } = await load(message.modelsUrl, message.backend ?? null);
      self.postMessage({ type: 'ready', manifest, fromCache, runtime });
    } catch (error) {
      self.postMessage({ type: 'error', stage: 'load', message: plain(error, 'The models could not be loaded') });
    }
  } else if (message.type === 'analyse') {
    try {
      const { photo, faces } = await analyse(message);
      const transfer = [photo.data.buffer];
      self.postMessage({ type: 'result', id: message.id, photo, faces, wholeImage: Boolean(message.wholeImage) }, transfer);
    } catch (error) {
      self.postMessage({
        type: 'error', id: message.id, stage: 'analyse', message: plain(error, 'This photo could not be checked'), unexpected: !expected(error),
      });
    }
  } else if (message.type === 'load-webcam') {
    try {
      self.postMessage({ type: 'webcam-ready', id: message.id, ...(await loadWebcam()) });
    } catch (error) {
      self.postMessage({ type: 'error', id: message.id, stage: 'live', message: plain(error, 'The webcam model could not be loaded') });
    }
  } else if (message.type === 'live-frame' || message.type === 'live-classify') {
    try {
      self.postMessage(await liveStep(message));
    } catch (error) {
      self.postMessage({ type: 'error', id: message.id, stage: 'live', message: plain(error, 'The camera frame could not be checked') });
    }
  }
}

// One message at a time: a photo check and webcam frames share the sessions, which run one call at once.
// A failure that escapes handle (a reply that cannot be posted) is answered here, so that the queue goes on
// and the page is not left waiting.
let queue = Promise.resolve();
self.onmessage = ({ data: message }) => {
  queue = queue.then(() => handle(message)).catch((error) => {
    self.postMessage({ type: 'error', id: message.id, stage: 'analyse', message: plain(error, 'The checker failed'), unexpected: true });
  });
};

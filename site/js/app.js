// The page: wires the inputs (file picker, drag and drop, paste, phone camera) to session.js, the
// webcam mode (camera.js, live.js) to the same worker, and shows what comes back with drawing.js.
// In the webcam mode the overlay is redrawn at every video frame, its boxes moved with the faces
// (follow.js) between the worker's steps. Holds no model logic.
//
// For tests and debugging, after every finished check the page sets
//   document.body.dataset.state: "loading" | "ready" | "working" | "result" | "noface" | "error"
//   document.body.dataset.checks: how many checks have finished (result, no face or error)
//   window.__masklens_last: {state, wholeImage, photo: {width, height}, error,
//     faces: [{box, score, class, probabilities, reason, reason_probabilities,
//              heatmaps: {layer: {dims, data: [numbers]}}}]}   (coarse maps, as analysePhoto gives them)
//   document.body.dataset.backend / .threads: what runs the classifiers once the models are loaded
//     ("webgpu" or "wasm"; the face detector runs on wasm) and the wasm threads ("2")
//   document.body.dataset.camera: "on" while the webcam mode runs, "off" after it stopped
//   window.__masklens_live: {steps, fps, detections, overlayFps, classifications, minFaceSize,
//     classifyIntervalMs, classifyShare, detectIntervalMs, tracks: [{id, box, class, probabilities}],
//     log: [{t, timing, minFaceSize, tracks: [{id, box, class, probabilities}]}], redraws: [t]} (t: ms since the camera
//     started; fps, detections: steps and detection steps per second; overlayFps: overlay redraws per
//     second; timing: live.js's; the
//     last LIVE_LOG_STEPS steps and redraws)
//
// Cross-origin isolation: hosts such as GitHub Pages cannot send the COOP/COEP headers that
// SharedArrayBuffer (and so onnxruntime's threads) needs; ../coi-sw.js adds them. On the first visit
// isolate() registers it and reloads the page once; without it (service workers blocked or
// unsupported) the models run on one thread, with the same answers.

import { MESSAGES as CANT_TELL } from './abstention.js';
import { closeCamera, openCamera } from './camera.js';
import { drawImage, drawLive, drawPhoto, heatmapOverlay } from './drawing.js';
import { heatmapNote } from './explanations.js';
import { FOLLOW_WIDTH, Follower, grayFrame } from './follow.js';
import { CLASSIFY_INTERVAL_MS, CLASSIFY_SHARE, DETECT_INTERVAL_MS, LiveLoop, RateMeter } from './live.js';
import { Session } from './session.js';

const MODELS_URL = new URL('../models/', import.meta.url).href;
// How often the heatmaps pointed at the right part of the face on the holdout (scripts/build_site.py writes it).
const EXPLANATIONS_URL = new URL('../explanations.json', import.meta.url).href;
const WORKER_URL = new URL('./worker.js', import.meta.url);
const SERVICE_WORKER_URL = new URL('../coi-sw.js', import.meta.url);
const RELOADED_KEY = 'masklens-coi-reloaded';
const SERVICE_WORKER_WAIT_MS = 3000;
const LIVE_LOG_STEPS = 5000;

const VERDICTS = {
  covered: 'Mask worn correctly: nose, mouth and chin are covered.',
  incorrect: 'Mask worn incorrectly.',
  uncovered: 'No mask over the nose and mouth.',
};
const REASONS = {
  nose: { what: 'The nose is uncovered.', fix: 'Pull the mask up over the nose and press the nose wire so it fits snugly.' },
  chin: { what: 'The chin is uncovered.', fix: 'Pull the mask down under the chin.' },
  nose_and_mouth: {
    what: 'The nose and mouth are uncovered (the mask sits on the chin).',
    fix: 'Pull the mask up so it covers the mouth and nose.',
  },
};

const $ = (id) => document.getElementById(id);
const ui = {
  drop: $('drop'), file: $('file'), status: $('status'), progress: $('progress'), error: $('error'),
  noface: $('noface'), whole: $('whole'), result: $('result'), photo: $('photo'), faces: $('faces'),
  detail: $('detail'), verdict: $('verdict'), advice: $('advice'), heatmap: $('heatmap'), bars: $('bars'),
  heatmapNote: $('heatmap-note'),
  explain: $('explain'), layer: $('layer'), opacity: $('opacity'), opacityValue: $('opacity-value'),
  modelInfo: $('model-info'), runtimeInfo: $('runtime-info'),
  cameraStart: $('camera-start'), cameraStop: $('camera-stop'), cameraError: $('camera-error'),
  liveView: $('live-view'), video: $('video'), overlay: $('overlay'), liveFps: $('live-fps'),
  liveFaces: $('live-faces'), liveStatus: $('live-status'), cameraLoading: $('camera-loading'), liveHeatmap: $('live-heatmap'),
};

let session = null;
let manifest = null;
let explanations = null; // the summary behind the line under the heatmap; null until loaded, or if missing
let current = null; // {photo, faces, wholeImage}
let selected = -1;
let lastBlob = null;
let busy = false;
let camera = null; // {stream, loop, started, follower, redraws, view, grabbed, small} while the webcam mode runs

function setState(state) {
  document.body.dataset.state = state;
}

function showError(message) {
  ui.error.textContent = message;
  ui.error.hidden = false;
}

function finished(state, extra = {}) {
  setState(state);
  document.body.dataset.checks = String(Number(document.body.dataset.checks || 0) + 1);
  window.__masklens_last = {
    state,
    wholeImage: current?.wholeImage ?? false,
    photo: current ? { width: current.photo.width, height: current.photo.height } : null,
    faces: (current?.faces ?? []).map((face) => ({
      box: face.box, score: face.score, class: face.class, cant_tell: face.cant_tell, probabilities: face.probabilities,
      reason: face.reason, reason_probabilities: face.reason_probabilities,
      heatmaps: Object.fromEntries(Object.entries(face.heatmaps)
        .map(([layer, maps]) => [layer, { dims: maps.dims, data: Array.from(maps.data) }])),
    })),
    ...extra,
  };
}

const percent = (p) => `${(100 * p).toFixed(1)}%`;

function formatBytes(bytes) {
  return bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${Math.round(bytes / 1e3)} kB`;
}

async function check(blob, { wholeImage = false } = {}) {
  if (!manifest || busy) return;
  busy = true;
  ui.error.hidden = true;
  ui.status.textContent = 'Working: finding faces and checking masks…';
  setState('working');
  ui.whole.disabled = true;
  try {
    const result = await session.analyse(blob, { wholeImage });
    lastBlob = blob;
    current = result;
    ui.noface.hidden = result.faces.length > 0;
    showResult();
    if (result.faces.length === 0) {
      ui.status.textContent = 'No face found.';
      finished('noface');
      ui.whole.focus();
    } else {
      const n = result.faces.length;
      ui.status.textContent = wholeImage ? 'Checked the whole photo as one face.'
        : `${n} face${n === 1 ? '' : 's'} found. Choose a face to see why.`;
      finished('result');
    }
  } catch (error) {
    // A bad file changes nothing else: the previous result, if any, stays on screen.
    let message = error.message;
    if (error.unexpected) {
      // The worker itself failed: its state cannot be trusted, so a new one takes over for the next photo.
      const sentence = /[.!?]$/.test(message) ? message : `${message}.`;
      message = `${sentence} The checker was restarted: try again.`;
      try {
        await restartSession();
      } catch (restartError) {
        message = `${sentence} The checker could not be restarted (${restartError.message}): reload the page.`;
        manifest = null;
      }
    }
    ui.status.textContent = manifest ? 'Ready. Choose a photo.' : '';
    showError(message);
    finished('error', { error: message });
  } finally {
    busy = false;
    ui.whole.disabled = false;
  }
}

function showResult() {
  const { photo, faces } = current;
  ui.result.hidden = false;
  selected = faces.length ? 0 : -1;
  drawPhoto(ui.photo, photo, faces, selected);
  ui.photo.setAttribute('aria-label', faces.length
    ? `Your photo with ${faces.length} face${faces.length === 1 ? '' : 's'} boxed: `
      + faces.map((f, i) => `face ${i + 1} ${f.cant_tell ? 'can’t tell' : f.class}`).join(', ')
    : 'Your photo; no face was found in it');
  ui.faces.replaceChildren(...faces.map((face, i) => {
    const item = document.createElement('li');
    const button = document.createElement('button');
    button.type = 'button';
    button.dataset.face = String(i);
    button.setAttribute('aria-pressed', String(i === selected));
    const name = document.createElement('span');
    name.textContent = `Face ${i + 1}: `;
    const cls = document.createElement('strong');
    cls.className = face.cant_tell ? 'cls-unsure' : `cls-${face.class}`;
    cls.textContent = face.cant_tell ? 'can’t tell' : `${face.class} ${percent(face.probabilities[face.class])}`;
    button.append(name, cls);
    button.addEventListener('click', () => selectFace(i));
    item.append(button);
    return item;
  }));
  if (faces.length) selectFace(0, false);
  else ui.detail.hidden = true;
}

function selectFace(index, focusDetail = true) {
  selected = index;
  const face = current.faces[index];
  drawPhoto(ui.photo, current.photo, current.faces, selected);
  for (const button of ui.faces.querySelectorAll('button')) {
    button.setAttribute('aria-pressed', String(Number(button.dataset.face) === index));
  }
  ui.detail.hidden = false;
  ui.verdict.className = face.cant_tell ? 'verdict cls-unsure' : `verdict cls-${face.class}`;
  ui.verdict.textContent = face.cant_tell ? `Face ${index + 1}: ${CANT_TELL[face.cant_tell]}`
    : `Face ${index + 1}: ${VERDICTS[face.class] ?? face.class}`;
  const reason = face.class === 'incorrect' && !face.cant_tell ? REASONS[face.reason] : null;
  ui.advice.hidden = !reason;
  ui.advice.textContent = reason ? `${reason.what} What to fix: ${reason.fix}` : '';
  ui.bars.replaceChildren(...manifest.classes.map((name) => {
    const row = document.createElement('div');
    row.className = 'bar';
    const label = document.createElement('span');
    label.textContent = name;
    const track = document.createElement('span');
    track.className = 'track';
    const fill = document.createElement('span');
    fill.className = `fill ${name}`;
    fill.style.width = `${100 * face.probabilities[name]}%`;
    fill.style.display = 'block';
    track.append(fill);
    track.setAttribute('role', 'img');
    track.setAttribute('aria-label', `${name}: ${percent(face.probabilities[name])}`);
    const value = document.createElement('span');
    value.className = 'value';
    value.textContent = percent(face.probabilities[name]);
    row.append(label, track, value);
    return row;
  }));
  ui.explain.value = face.class;
  renderHeatmap();
  if (focusDetail) ui.detail.scrollIntoView({ block: 'nearest' });
}

function renderHeatmap() {
  if (!current || selected < 0) return;
  const face = current.faces[selected];
  const classIndex = manifest.classes.indexOf(ui.explain.value);
  const opacity = Number(ui.opacity.value) / 100;
  ui.opacityValue.textContent = `${ui.opacity.value}%`;
  drawImage(ui.heatmap, heatmapOverlay(face, manifest, { layer: ui.layer.value, classIndex, opacity }));
  ui.heatmap.setAttribute('aria-label', `Face ${selected + 1} crop with the ${ui.layer.value} heatmap `
    + `for "${ui.explain.value}" at ${ui.opacity.value}% opacity`);
  ui.heatmapNote.textContent = heatmapNote(explanations, {
    layer: ui.layer.value, className: ui.explain.value, reason: face.class === ui.explain.value ? face.reason : null,
  });
}

function firstImage(files) {
  return Array.from(files ?? []).find((file) => file.size >= 0) ?? null;
}

function wireInputs() {
  ui.file.addEventListener('change', () => {
    const file = firstImage(ui.file.files);
    if (file) check(file);
    ui.file.value = '';
  });
  ui.drop.addEventListener('keydown', (event) => {
    if (event.target === ui.drop && (event.key === 'Enter' || event.key === ' ')) {
      event.preventDefault();
      ui.file.click();
    }
  });
  for (const type of ['dragenter', 'dragover']) {
    ui.drop.addEventListener(type, (event) => { event.preventDefault(); ui.drop.classList.add('over'); });
  }
  ui.drop.addEventListener('dragleave', () => ui.drop.classList.remove('over'));
  ui.drop.addEventListener('drop', (event) => {
    event.preventDefault();
    ui.drop.classList.remove('over');
    const file = firstImage(event.dataTransfer?.files);
    if (file) check(file);
  });
  // A photo dropped anywhere else must not make the browser navigate away to it.
  window.addEventListener('dragover', (event) => event.preventDefault());
  window.addEventListener('drop', (event) => event.preventDefault());
  document.addEventListener('paste', (event) => {
    const file = firstImage(event.clipboardData?.files);
    if (file) { event.preventDefault(); check(file); }
  });
  ui.whole.addEventListener('click', () => { if (lastBlob) check(lastBlob, { wholeImage: true }); });
  ui.explain.addEventListener('change', renderHeatmap);
  ui.layer.addEventListener('change', renderHeatmap);
  ui.opacity.addEventListener('input', renderHeatmap);
  ui.cameraStart.addEventListener('click', startCamera);
  ui.cameraStop.addEventListener('click', stopCamera);
  // A hidden tab gets no video frames: release the camera rather than hold it idle.
  document.addEventListener('visibilitychange', () => { if (document.hidden) stopCamera(); });
}

/** A video frame (or a bitmap of one) as follow.js's small gray frame. */
function grayOf(source, width, height, current) {
  const small = [FOLLOW_WIDTH, Math.max(1, Math.round((height * FOLLOW_WIDTH) / width))];
  if (current.small?.width !== small[0] || current.small?.height !== small[1]) current.small = new OffscreenCanvas(...small);
  const context = current.small.getContext('2d', { willReadFrequently: true });
  context.drawImage(source, 0, 0, ...small);
  return grayFrame(context.getImageData(0, 0, ...small));
}

/** The video's current frame, or null before the camera delivers one; its gray copy is kept for the follower. */
async function grabFrame(current) {
  const { video } = ui;
  if (video.readyState < HTMLMediaElement.HAVE_CURRENT_DATA || !video.videoWidth) return null;
  const frame = await createImageBitmap(video);
  current.grabbed = grayOf(frame, frame.width, frame.height, current);
  return frame;
}

/** Draws the overlay: the last step's labels on these tracks' boxes. */
function redraw(current, tracks) {
  const { view } = current;
  drawLive(ui.overlay, { ...view, tracks }, manifest, { heatmapLayer: ui.liveHeatmap.checked ? manifest.classifier.webcam.target_layers[0] : null });
  const t = performance.now();
  current.redraws.tick(t);
  const fps = current.redraws.rate(t);
  const text = `${fps.toFixed(1)} fps · faces looked for ${view.detections.toFixed(1)}/s · ${view.classifications.toFixed(1)} checks/s per face`;
  if (ui.liveFps.textContent !== text) ui.liveFps.textContent = text;
  const state = window.__masklens_live;
  state.overlayFps = fps;
  state.redraws.push(t - current.started);
  if (state.redraws.length > LIVE_LOG_STEPS) state.redraws.shift();
}

/** At every new video frame, moves the boxes with the faces and redraws, until the camera stops. */
function followFrames(current) {
  const { video } = ui;
  const next = () => {
    if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(onFrame);
    else requestAnimationFrame(onFrame);
  };
  const onFrame = () => {
    if (camera !== current) return;
    if (current.view && video.videoWidth) {
      redraw(current, current.follower.follow(grayOf(video, video.videoWidth, video.videoHeight, current)));
    }
    next();
  };
  next();
}

function showLive(view, current) {
  if (camera !== current) return; // a step that finished after the camera was stopped
  current.view = view;
  current.follower.reset(current.grabbed, view.tracks, FOLLOW_WIDTH / view.width);
  // The step's boxes are where the faces were when its frame was taken: draw them where they are now.
  redraw(current, current.follower.follow(grayOf(ui.video, ui.video.videoWidth, ui.video.videoHeight, current)));
  const labelled = view.tracks.filter((track) => track.label);
  const summary = labelled.map((track) => `Face ${track.id}: ${track.label.class}`).join('. ');
  if (ui.liveStatus.textContent !== summary) ui.liveStatus.textContent = summary; // announced on change only
  ui.liveFaces.replaceChildren(...labelled.map((track) => {
    const item = document.createElement('li');
    item.dataset.track = String(track.id);
    item.dataset.class = track.label.class;
    const name = document.createElement('span');
    name.textContent = `Face ${track.id}: `;
    const cls = document.createElement('strong');
    cls.className = `cls-${track.label.class}`;
    cls.textContent = `${track.label.class} ${percent(track.label.probabilities[track.label.class])}`;
    item.append(name, cls);
    return item;
  }));
  const state = window.__masklens_live;
  const t = performance.now() - current.started;
  const tracks = labelled.map((track) => ({
    id: track.id, box: Array.from(track.box), class: track.label.class, probabilities: track.label.probabilities,
  }));
  state.steps += 1;
  Object.assign(state, {
    fps: view.fps, detections: view.detections, classifications: view.classifications, minFaceSize: view.minFaceSize,
  });
  state.tracks = tracks;
  state.log.push({ t, timing: view.timing, minFaceSize: view.minFaceSize, tracks });
  if (state.log.length > LIVE_LOG_STEPS) state.log.shift();
}

async function startCamera() {
  if (!manifest || camera) return;
  ui.cameraError.hidden = true;
  ui.cameraStart.disabled = true;
  let stream;
  try {
    // The webcam's own graph, downloaded the first time the camera starts (a photo check never needs it).
    await session.loadWebcam(({ loaded, total }) => {
      ui.cameraLoading.hidden = false;
      ui.cameraLoading.textContent = `Loading the webcam model: ${formatBytes(loaded)} of ${formatBytes(total)}`;
    });
    ui.cameraLoading.hidden = true;
    stream = await openCamera(navigator.mediaDevices);
    ui.video.srcObject = stream;
    await ui.video.play();
  } catch (error) {
    ui.cameraLoading.hidden = true;
    closeCamera(stream);
    ui.video.srcObject = null;
    ui.cameraError.textContent = error.message;
    ui.cameraError.hidden = false;
    ui.cameraStart.disabled = false;
    return;
  }
  const current = { stream, started: performance.now(), follower: new Follower(), redraws: new RateMeter(), view: null };
  current.loop = new LiveLoop({
    session,
    manifest,
    grabFrame: () => grabFrame(current),
    followBoxes: (tracks) => {
      const followed = new Map(current.follower.follow(current.grabbed).map((track) => [track.id, track.box]));
      return tracks.map((track) => followed.get(track.id) ?? track.box);
    },
    onUpdate: (view) => showLive(view, current),
  });
  camera = current;
  window.__masklens_live = {
    steps: 0, fps: 0, detections: 0, overlayFps: 0, classifications: 0, minFaceSize: manifest.tracking.min_face_size,
    classifyIntervalMs: CLASSIFY_INTERVAL_MS, classifyShare: CLASSIFY_SHARE, detectIntervalMs: DETECT_INTERVAL_MS,
    tracks: [], log: [], redraws: [],
  };
  ui.liveView.hidden = false;
  ui.cameraStop.disabled = false;
  document.body.dataset.camera = 'on';
  // The track ends when the camera is unplugged or the permission is withdrawn.
  for (const track of stream.getVideoTracks()) track.addEventListener('ended', () => stopCamera());
  followFrames(current);
  current.loop.run().catch((error) => {
    if (camera !== current) return;
    stopCamera();
    ui.cameraError.textContent = error.message;
    ui.cameraError.hidden = false;
  });
  ui.cameraStop.focus();
}

function stopCamera() {
  if (!camera) return;
  camera.loop.stop();
  closeCamera(camera.stream);
  camera = null;
  ui.video.srcObject = null;
  ui.liveView.hidden = true;
  ui.liveFaces.replaceChildren();
  ui.liveStatus.textContent = 'Camera stopped.';
  ui.cameraStop.disabled = true;
  ui.cameraStart.disabled = false;
  document.body.dataset.camera = 'off';
  ui.cameraStart.focus();
}

/**
 * Makes the page cross-origin isolated if it is not yet: registers the service worker and reloads once.
 * Returns true when a reload is under way (the page must not start), false to go on as the page is.
 */
async function isolate() {
  const reloaded = {
    get: () => { try { return sessionStorage.getItem(RELOADED_KEY) !== null; } catch { return true; } },
    set: (on) => {
      try {
        if (on) sessionStorage.setItem(RELOADED_KEY, '1');
        else sessionStorage.removeItem(RELOADED_KEY);
      } catch { /* no storage: at most one reload is still ensured by get() */ }
    },
  };
  if (window.crossOriginIsolated) {
    reloaded.set(false);
    return false;
  }
  if (!window.isSecureContext || !('serviceWorker' in navigator)) return false;
  try {
    // A blocked registration may neither resolve nor reject: give up after a few seconds.
    const timeout = new Promise((_, reject) => {
      setTimeout(() => reject(new Error('timed out')), SERVICE_WORKER_WAIT_MS);
    });
    await Promise.race([
      navigator.serviceWorker.register(SERVICE_WORKER_URL, { scope: './' }).then(() => navigator.serviceWorker.ready),
      timeout]);
  } catch {
    return false; // blocked (private mode, policy), failed or too slow: one thread
  }
  // Registered and active, yet this page is not isolated: it loaded before the worker (first visit, or a
  // hard reload that bypassed it). One reload per tab session, so a browser that ignores the headers
  // cannot loop.
  if (reloaded.get()) return false;
  reloaded.set(true);
  window.location.reload();
  return true;
}

/** A new worker in place of one that failed: the models again, from this device's cache (worker.js). */
async function restartSession() {
  stopCamera();
  session.terminate();
  session = new Session(WORKER_URL);
  await session.load(MODELS_URL, () => {}, { backend: requestedBackend() });
}

/** ?backend=webgpu or ?backend=wasm in the page's address asks for that backend (worker.js's chooseBackend). */
function requestedBackend() {
  const backend = new URLSearchParams(window.location.search).get('backend');
  return backend === 'webgpu' || backend === 'wasm' ? backend : null;
}

async function start() {
  if (await isolate()) return;
  setState('loading');
  wireInputs();
  ui.file.disabled = true;
  ui.status.textContent = 'Loading the models…';
  ui.progress.hidden = false;
  try {
    session = new Session(WORKER_URL);
    const ready = await session.load(MODELS_URL, ({ loaded, total }) => {
      ui.progress.max = total || 1;
      ui.progress.value = loaded;
      ui.status.textContent = `Loading the models: ${formatBytes(loaded)} of ${formatBytes(total)}`;
    }, { backend: requestedBackend() });
    manifest = ready.manifest;
    // The line under the heatmap can do without its numbers: a missing summary leaves them out.
    explanations = await fetch(EXPLANATIONS_URL).then((response) => (response.ok ? response.json() : null), () => null);
    ui.explain.replaceChildren(...manifest.classes.map((name) => new Option(name, name)));
    const layers = new Set(manifest.classifier.target_layers);
    for (const option of [...ui.layer.options]) if (!layers.has(option.value)) option.remove();
    ui.modelInfo.textContent = `Model ${manifest.model_version}.`;
    const { backend, threads } = ready.runtime;
    const wasm = `wasm, ${threads} thread${threads === 1 ? '' : 's'}`;
    ui.runtimeInfo.textContent = backend === 'webgpu'
      ? `Runs on this device: the classifier on the GPU (WebGPU), the face finder on ${wasm}.`
      : `Runs on this device: ${wasm}.`;
    document.body.dataset.backend = backend;
    document.body.dataset.threads = String(threads);
    ui.progress.hidden = true;
    ui.file.disabled = false;
    ui.cameraStart.disabled = false;
    ui.status.textContent = ready.fromCache ? 'Ready (models from this device’s cache). Choose a photo.'
      : 'Ready. Choose a photo.';
    setState('ready');
  } catch (error) {
    ui.progress.hidden = true;
    ui.status.textContent = 'The checker could not start.';
    showError(error.message);
    setState('error');
  }
}

start();

// The page's side of worker.js: starts the worker, loads the models, and turns photo checks into
// promises. Message shapes are documented at the top of worker.js.
//
// const session = new Session(workerUrl)
// await session.load(modelsUrl, onProgress, {backend}) -> {manifest, fromCache, runtime: {backend, threads}};
//   onProgress({loaded, total, file}); backend: "webgpu" or "wasm" to ask for one (worker.js), else null
// await session.loadWebcam(onProgress) -> {fromCache}: the webcam's classifier, downloaded the first time the
//   camera starts; onProgress as for load
// await session.analyse(blob, {wholeImage}) -> {photo, faces, wholeImage}; rejects with an Error whose
//   message is plain words (not an image, too large, ...), and whose .unexpected is true when the worker
//   itself failed (worker.js), or stopped: then the page replaces the session (session.terminate())
// session.terminate(): stops the worker; what it was still doing is rejected
// await session.liveFrame(frame, {detect, minFaceSize}) -> {width, height, faces}: frame an ImageBitmap (transferred);
//   faces [{box, score}] when detect, else null
// await session.liveClassify(boxes) -> {faces, runMs}: the faces at these boxes of the last live frame, classified;
//   runMs: the time of the classifier's onnxruntime run alone (worker.js)

function unexpected(message) {
  return Object.assign(new Error(message), { unexpected: true });
}

export class Session {
  constructor(workerUrl) {
    this.worker = new Worker(workerUrl, { type: 'module' });
    this.nextId = 1;
    this.pending = new Map();
    this.loading = null;
    this.onProgress = null;
    this.worker.onmessage = ({ data }) => this.receive(data);
    this.loaded = false;
    this.worker.onerror = (event) => {
      event.preventDefault?.();
      // Before the models are ready: the browser cannot run the worker. After: it failed in the middle of a run.
      this.failAll(this.loaded ? unexpected('The checker stopped while checking this photo.')
        : new Error('The checker could not start in this browser. Try an up-to-date Chrome, Edge, Firefox or Safari.'));
    };
  }

  receive(message) {
    if (message.type === 'progress') {
      this.onProgress?.(message);
    } else if (message.type === 'ready') {
      this.loaded = true;
      this.loading?.resolve({ manifest: message.manifest, fromCache: message.fromCache, runtime: message.runtime });
    } else if (message.type === 'error' && message.stage === 'load') {
      this.loading?.reject(new Error(message.message));
    } else if (message.id !== undefined) {
      const request = this.pending.get(message.id);
      if (!request) return;
      this.pending.delete(message.id);
      if (message.type === 'error') request.reject(message.unexpected ? unexpected(message.message) : new Error(message.message));
      else request.resolve(message);
    }
  }

  failAll(error) {
    this.loading?.reject(error);
    for (const request of this.pending.values()) request.reject(error);
    this.pending.clear();
  }

  terminate() {
    this.worker.terminate();
    this.failAll(unexpected('The checker was stopped.'));
  }

  load(modelsUrl, onProgress, { backend = null } = {}) {
    return new Promise((resolve, reject) => {
      this.loading = { resolve, reject };
      this.onProgress = onProgress;
      this.worker.postMessage({ type: 'load', modelsUrl, backend });
    });
  }

  request(message, transfer = []) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...message, id }, transfer);
    });
  }

  async loadWebcam(onProgress) {
    this.onProgress = onProgress;
    const { fromCache } = await this.request({ type: 'load-webcam' });
    return { fromCache };
  }

  analyse(blob, { wholeImage = false } = {}) {
    return this.request({ type: 'analyse', blob, wholeImage });
  }

  async liveFrame(frame, { detect, minFaceSize }) {
    const { width, height, faces } = await this.request({ type: 'live-frame', frame, detect, minFaceSize }, [frame]);
    return { width, height, faces };
  }

  async liveClassify(boxes) {
    const { faces, runMs } = await this.request({ type: 'live-classify', boxes });
    return { faces, runMs };
  }
}

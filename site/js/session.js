// The page's side of worker.js: starts the worker, loads the models, and turns photo checks into
// promises. Message shapes are documented at the top of worker.js.
//
// const session = new Session(workerUrl)
// await session.load(modelsUrl, onProgress) -> {manifest, fromCache, runtime: {backend, threads}};
//   onProgress({loaded, total, file})
// await session.analyse(blob, {wholeImage}) -> {photo, faces, wholeImage}; rejects with an Error whose
//   message is plain words (not an image, too large, ...)

export class Session {
  constructor(workerUrl) {
    this.worker = new Worker(workerUrl, { type: 'module' });
    this.nextId = 1;
    this.pending = new Map();
    this.loading = null;
    this.worker.onmessage = ({ data }) => this.receive(data);
    this.worker.onerror = (event) => {
      event.preventDefault?.();
      this.failAll(new Error('The checker could not start in this browser. Try an up-to-date Chrome, Edge, Firefox or Safari.'));
    };
  }

  receive(message) {
    if (message.type === 'progress') {
      this.loading?.onProgress?.(message);
    } else if (message.type === 'ready') {
      this.loading?.resolve({ manifest: message.manifest, fromCache: message.fromCache, runtime: message.runtime });
    } else if (message.type === 'error' && message.stage === 'load') {
      this.loading?.reject(new Error(message.message));
    } else if (message.type === 'result' || message.type === 'error') {
      const request = this.pending.get(message.id);
      if (!request) return;
      this.pending.delete(message.id);
      if (message.type === 'result') request.resolve(message);
      else request.reject(new Error(message.message));
    }
  }

  failAll(error) {
    this.loading?.reject(error);
    for (const request of this.pending.values()) request.reject(error);
    this.pending.clear();
  }

  load(modelsUrl, onProgress) {
    return new Promise((resolve, reject) => {
      this.loading = { resolve, reject, onProgress };
      this.worker.postMessage({ type: 'load', modelsUrl });
    });
  }

  analyse(blob, { wholeImage = false } = {}) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ type: 'analyse', id, blob, wholeImage });
    });
  }
}

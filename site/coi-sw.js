// MaskLens's service worker: cross-origin isolation on hosts that cannot set response headers
// (GitHub Pages), in the spirit of coi-serviceworker. Isolation lets onnxruntime-web use
// SharedArrayBuffer, so the models run on several threads. And the app after a first visit offline.
//
// It adds Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp to the
// responses that decide isolation: the app's page (navigations) and its worker scripts.
//
// Offline: the app's own files (page, scripts, styles, manifest.json and its schema) go to the network
// first, as without this worker (the HTTP cache and 304s included), and a copy of each answer is kept in
// Cache Storage; only when the network fails is the kept copy used. So an online visit always runs the
// site as it is now (no version to bump), and a visit without a network runs the last one seen. The
// models and onnxruntime's wasm binary are not copied here: worker.js keeps them in Cache Storage itself,
// under their sha256 and the runtime's version, and reads them from there first.
//
// app.js registers it (scope: the app's folder) and reloads the page once; see isolate() there.

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

const ISOLATING = new Set(['document', 'iframe', 'worker', 'sharedworker']);
const SHELL_CACHE = 'masklens-shell-v1';
// Kept by worker.js under content keys (see above): a second copy would double the storage.
const NOT_SHELL = /\.(onnx|wasm)$/;

function isolated(response) {
  // Opaque redirects and network errors pass through unchanged (their headers cannot be set).
  if (response.type === 'opaqueredirect' || response.status === 0) return response;
  const headers = new Headers(response.headers);
  headers.set('Cross-Origin-Opener-Policy', 'same-origin');
  headers.set('Cross-Origin-Embedder-Policy', 'require-corp');
  headers.set('Cross-Origin-Resource-Policy', 'same-origin');
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
}

/** The network's answer, a copy kept for offline use; without a network, the copy kept last time. */
async function networkFirst(request) {
  const cache = await caches.open(SHELL_CACHE).catch(() => null); // storage refused: the network alone
  try {
    const response = await fetch(request);
    if (cache && response.ok && response.type === 'basic') {
      cache.put(request, response.clone()).catch(() => {}); // quota full: still answer from the network
    }
    return response;
  } catch (error) {
    const kept = await cache?.match(request, { ignoreVary: true });
    if (kept) return kept;
    throw error;
  }
}

self.addEventListener('fetch', (event) => {
  const { request } = event;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin || request.method !== 'GET') return;
  if (request.cache === 'only-if-cached' && request.mode !== 'same-origin') return;
  const isolating = request.mode === 'navigate' || ISOLATING.has(request.destination);
  if (!isolating && NOT_SHELL.test(url.pathname)) return;
  event.respondWith(isolating ? networkFirst(request).then(isolated) : networkFirst(request));
});

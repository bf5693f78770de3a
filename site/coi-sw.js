// MaskLens's service worker: cross-origin isolation on hosts that cannot set response headers
// (GitHub Pages), in the spirit of coi-serviceworker. Isolation lets onnxruntime-web use
// SharedArrayBuffer, so the models run on several threads.
//
// It adds Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp to the
// responses that decide isolation: the app's page (navigations) and its worker scripts. Every other
// request (the models, onnxruntime's wasm, scripts, styles) is not touched: it goes to the network or
// the browser's caches exactly as without this worker, and the models' Cache API copies stay the
// worker.js's own business. The worker caches nothing and fetches nothing by itself.
//
// app.js registers it (scope: the app's folder) and reloads the page once; see isolate() there.

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

const ISOLATING = new Set(['document', 'iframe', 'worker', 'sharedworker']);

function isolated(response) {
  // Opaque redirects and network errors pass through unchanged (their headers cannot be set).
  if (response.type === 'opaqueredirect' || response.status === 0) return response;
  const headers = new Headers(response.headers);
  headers.set('Cross-Origin-Opener-Policy', 'same-origin');
  headers.set('Cross-Origin-Embedder-Policy', 'require-corp');
  headers.set('Cross-Origin-Resource-Policy', 'same-origin');
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
}

self.addEventListener('fetch', (event) => {
  const { request } = event;
  if (new URL(request.url).origin !== self.location.origin) return;
  if (request.mode !== 'navigate' && !ISOLATING.has(request.destination)) return;
  if (request.cache === 'only-if-cached' && request.mode !== 'same-origin') return;
  event.respondWith(fetch(request).then(isolated));
});

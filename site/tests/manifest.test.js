// site/js/manifest.js against masklens/manifest.py: the same manifests refused with the same messages
// (tests/js_fixtures.py's manifest_validation: JSON Patch operations on the committed manifest, and
// Python's message for each), and the loader's plain errors.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { ManifestError, manifestProblem, pythonJson, readManifest, typeName, validateManifest } from '../js/manifest.js';

const fixtures = JSON.parse(readFileSync(new URL('./fixtures/python.json', import.meta.url), 'utf8')).manifest_validation;
const repoFile = (path) => JSON.parse(readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8'));
const manifest = repoFile(fixtures.manifest);
const schema = repoFile(fixtures.schema);

/** RFC 6901: a JSON Pointer's reference tokens. */
const tokens = (pointer) => pointer.split('/').slice(1).map((token) => token.replaceAll('~1', '/').replaceAll('~0', '~'));

/** RFC 6902's add, replace and remove on a copy of the document (tests/js_fixtures.py's apply_patch). */
function applyPatch(document, operations) {
  let result = structuredClone(document);
  for (const { op, path, value } of operations) {
    const keys = tokens(path);
    if (keys.length === 0) {
      result = structuredClone(value);
      continue;
    }
    let target = result;
    for (const key of keys.slice(0, -1)) target = target[Array.isArray(target) ? Number(key) : key];
    const last = keys.at(-1);
    if (Array.isArray(target)) {
      const index = Number(last);
      if (op === 'remove') target.splice(index, 1);
      else if (op === 'add') target.splice(index, 0, structuredClone(value));
      else target[index] = structuredClone(value);
    } else if (op === 'remove') {
      delete target[last];
    } else {
      target[last] = structuredClone(value);
    }
  }
  return result;
}

test('the fixtures cover the validator: the committed manifest and over 15 broken ones', () => {
  assert.equal(fixtures.cases[0].message, null, 'the committed manifest is valid for Python');
  assert.ok(fixtures.cases.filter((c) => c.message !== null).length >= 15);
});

for (const { name, patch, message } of fixtures.cases) {
  test(`the same answer as masklens.manifest.validate: ${name}`, () => {
    assert.equal(manifestProblem(applyPatch(manifest, patch), schema), message);
  });
}

test('pythonJson writes what json.dumps writes', () => {
  for (const [value, dumped] of fixtures.dumps) assert.equal(pythonJson(value), dumped, JSON.stringify(value));
});

test('typeName names integers before numbers, and booleans apart from them', () => {
  assert.deepEqual([null, true, 3, 3.5, 's', [], {}].map(typeName),
    ['null', 'boolean', 'integer', 'number', 'string', 'array', 'object']);
});

test('validateManifest throws a ManifestError with the message, or nothing', () => {
  assert.doesNotThrow(() => validateManifest(manifest, schema));
  const { tracking, ...old } = manifest;
  assert.throws(() => validateManifest({ ...old, live: tracking }, schema),
    { name: 'ManifestError', message: 'field `tracking` is missing' });
});

/** A fetch over {url: body}: strings are served as they are, anything else as JSON; missing: 404. */
function fakeFetch(files) {
  return async (url, options) => {
    assert.equal(options.cache, 'no-cache');
    if (!(url in files)) return new Response('not found', { status: 404 });
    const body = files[url];
    return new Response(typeof body === 'string' ? body : JSON.stringify(body), { status: 200 });
  };
}

const MODELS = 'https://example.test/app/models/';
const SCHEMA = 'https://example.test/app/js/manifest.schema.json';

test('readManifest gives the manifest that follows the schema', async () => {
  const fetch = fakeFetch({ [`${MODELS}manifest.json`]: manifest, [SCHEMA]: schema });
  assert.deepEqual(await readManifest(MODELS, { schemaUrl: SCHEMA, fetch }), manifest);
  assert.deepEqual(await readManifest(MODELS.slice(0, -1), { schemaUrl: SCHEMA, fetch }), manifest);
});

test('readManifest refuses another format, naming the field', async () => {
  const fetch = fakeFetch({ [`${MODELS}manifest.json`]: { ...manifest, format: 'masklens-manifest/1' }, [SCHEMA]: schema });
  await assert.rejects(readManifest(MODELS, { schemaUrl: SCHEMA, fetch }), {
    name: 'ManifestError',
    message: 'The model description manifest.json cannot be used: field `format` is "masklens-manifest/1": '
      + 'this MaskLens reads "masklens-manifest/2" only (re-export the model with masklens export).',
  });
});

test('readManifest says plainly when a file is missing or not JSON', async () => {
  await assert.rejects(readManifest(MODELS, { schemaUrl: SCHEMA, fetch: fakeFetch({ [SCHEMA]: schema }) }),
    { name: 'ManifestError', message: 'Could not download the model description manifest.json (HTTP 404).' });
  await assert.rejects(readManifest(MODELS, { schemaUrl: SCHEMA, fetch: fakeFetch({ [`${MODELS}manifest.json`]: manifest }) }),
    { name: 'ManifestError', message: 'Could not download the model description\'s schema manifest.schema.json (HTTP 404).' });
  const fetch = fakeFetch({ [`${MODELS}manifest.json`]: '{"format": ', [SCHEMA]: schema });
  await assert.rejects(readManifest(MODELS, { schemaUrl: SCHEMA, fetch }),
    (error) => error instanceof ManifestError && error.message.startsWith('The model description manifest.json is not JSON ('));
});

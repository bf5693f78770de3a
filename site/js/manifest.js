// The manifest beside the models, checked against its versioned JSON Schema before anything uses it:
// a port of masklens/manifest.py's validate, rule for rule and message for message, so the browser and
// the Python runtime refuse the same manifests naming the same field (site/tests/manifest.test.js holds
// the two to the same answers with tests/js_fixtures.py's cases). Pure functions, no DOM.
//
// The schema is masklens/manifest.schema.json; scripts/build_site.py copies it beside this file
// (app/js/manifest.schema.json): it is the contract of this code, shipped with it, not with the models.
//
// manifestProblem(manifest, schema) -> null, or the first problem in plain words naming the field:
//   another `format` first ("field `format` is ...: this MaskLens reads ... only (...)"), then the
//   schema walked in a fixed order (problemOf).
// validateManifest(manifest, schema): throws ManifestError(manifestProblem(...)) when there is one.
// readManifest(modelsUrl, {schemaUrl, fetch}) -> the folder's manifest.json, parsed and validated;
//   throws ManifestError (plain words) when it cannot be downloaded, is not JSON or breaks the schema.
// typeName(value): the JSON type as the schema names it ("integer" before "number").
// pythonJson(value): what Python's json.dumps(value) writes (", " and ": " separators, ASCII only,
//   floats as repr), for the values in messages.
//
// Where the two can differ: JSON.parse keeps no difference between 1 and 1.0, so a number written with
// a fraction of zero (40.0) counts as an integer here (as JSON Schema counts it) and is quoted without
// ".0"; patterns are JavaScript regular expressions (JSON Schema's dialect), whose $ does not match
// before a final newline as Python's does; and JavaScript lists integer-like keys ("7") of an object
// first, so with several problems another one may be named first.

export const SCHEMA_URL = new URL('./manifest.schema.json', import.meta.url).href;

/** A manifest that cannot be used; the message is plain words that name the field. */
export class ManifestError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ManifestError';
  }
}

const has = (object, key) => Object.prototype.hasOwnProperty.call(object, key);
const isObject = (value) => typeof value === 'object' && value !== null && !Array.isArray(value);

const TYPES = {
  object: isObject,
  array: (value) => Array.isArray(value),
  string: (value) => typeof value === 'string',
  integer: (value) => typeof value === 'number' && Number.isInteger(value),
  number: (value) => typeof value === 'number',
  boolean: (value) => typeof value === 'boolean',
  null: (value) => value === null,
};

export function typeName(value) {
  for (const name of ['null', 'boolean', 'integer', 'number', 'string', 'array', 'object']) {
    if (TYPES[name](value)) return name;
  }
  return typeof value;
}

/** Python's repr of a float that is not an integer: shortest digits, exponent below 1e-4 and from 1e16. */
function pythonFloat(value) {
  if (Number.isNaN(value)) return 'NaN';
  if (!Number.isFinite(value)) return value > 0 ? 'Infinity' : '-Infinity';
  const [mantissa, exponentText] = value.toExponential().split('e'); // shortest round-trip digits
  const exponent = Number(exponentText);
  const sign = mantissa.startsWith('-') ? '-' : '';
  const digits = mantissa.replace('-', '').replace('.', '');
  if (exponent < -4 || exponent >= 16) {
    const fraction = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    const power = String(Math.abs(exponent)).padStart(2, '0');
    return `${sign}${fraction}e${exponent < 0 ? '-' : '+'}${power}`;
  }
  if (exponent < 0) return `${sign}0.${'0'.repeat(-exponent - 1)}${digits}`;
  const whole = digits.slice(0, exponent + 1).padEnd(exponent + 1, '0');
  const fraction = digits.slice(exponent + 1);
  return `${sign}${whole}.${fraction || '0'}`;
}

function pythonNumber(value) {
  if (!Number.isInteger(value)) return pythonFloat(value);
  return Math.abs(value) < 1e21 ? String(value) : BigInt(value).toString();
}

/** A string as json.dumps writes it (ensure_ascii): \uXXXX (lower-case hex) outside printable ASCII. */
function pythonString(text) {
  const escapes = { '"': '\\"', '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\b': '\\b', '\f': '\\f' };
  let out = '"';
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    const code = text.charCodeAt(i);
    if (has(escapes, char)) out += escapes[char];
    else if (code >= 0x20 && code <= 0x7e) out += char;
    else out += `\\u${code.toString(16).padStart(4, '0')}`;
  }
  return `${out}"`;
}

export function pythonJson(value) {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number') return pythonNumber(value);
  if (typeof value === 'string') return pythonString(value);
  if (Array.isArray(value)) return `[${value.map(pythonJson).join(', ')}]`;
  return `{${Object.entries(value).map(([key, item]) => `${pythonString(key)}: ${pythonJson(item)}`).join(', ')}}`;
}

/** Python's ==: booleans are the numbers 0 and 1, lists and dicts compare item by item. */
function pythonEqual(a, b) {
  const numeric = (value) => typeof value === 'number' || typeof value === 'boolean';
  if (numeric(a) && numeric(b)) return Number(a) === Number(b);
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((item, i) => pythonEqual(item, b[i]));
  }
  if (isObject(a) && isObject(b)) {
    const keys = Object.keys(a);
    return keys.length === Object.keys(b).length && keys.every((key) => has(b, key) && pythonEqual(a[key], b[key]));
  }
  return a === b;
}

const patterns = new Map();
function matches(pattern, text) {
  if (!patterns.has(pattern)) patterns.set(pattern, new RegExp(pattern));
  return patterns.get(pattern).test(text);
}

/**
 * The first way `value` breaks `rule`, or null. The order is masklens/manifest.py's _problem: $ref,
 * const, enum, type, then an object's keys (objectProblem), an array's minItems, maxItems and items,
 * a number's minimum and exclusiveMinimum, a string's pattern.
 */
function problemOf(value, rule, path, root) {
  if (has(rule, '$ref')) {
    const name = rule.$ref.startsWith('#/$defs/') ? rule.$ref.slice('#/$defs/'.length) : rule.$ref;
    if (!has(root.$defs ?? {}, name)) throw new Error(`the schema has no $defs entry ${name}`);
    rule = root.$defs[name];
  }
  const where = path ? `field \`${path}\`` : 'the manifest';
  if (has(rule, 'const') && !pythonEqual(value, rule.const)) {
    return `${where} is ${pythonJson(value)}, expected ${pythonJson(rule.const)}`;
  }
  if (has(rule, 'enum') && !rule.enum.some((option) => pythonEqual(value, option))) {
    return `${where} is ${pythonJson(value)}, expected one of ${rule.enum.map(pythonJson).join(', ')}`;
  }
  if (has(rule, 'type')) {
    const allowed = Array.isArray(rule.type) ? rule.type : [rule.type];
    if (!allowed.some((name) => TYPES[name](value))) return `${where} is ${typeName(value)}, expected ${allowed.join(' or ')}`;
  }
  if (isObject(value)) return objectProblem(value, rule, path, root);
  if (Array.isArray(value)) {
    if (has(rule, 'minItems') && value.length < rule.minItems) {
      return `${where} has ${value.length} items, expected at least ${pythonNumber(rule.minItems)}`;
    }
    if (has(rule, 'maxItems') && value.length > rule.maxItems) {
      return `${where} has ${value.length} items, expected at most ${pythonNumber(rule.maxItems)}`;
    }
    if (has(rule, 'items')) {
      for (let i = 0; i < value.length; i++) {
        const problem = problemOf(value[i], rule.items, `${path}[${i}]`, root);
        if (problem) return problem;
      }
      return null;
    }
  }
  if (TYPES.number(value)) {
    if (has(rule, 'minimum') && value < rule.minimum) {
      return `${where} is ${pythonJson(value)}, expected at least ${pythonNumber(rule.minimum)}`;
    }
    if (has(rule, 'exclusiveMinimum') && value <= rule.exclusiveMinimum) {
      return `${where} is ${pythonJson(value)}, expected more than ${pythonNumber(rule.exclusiveMinimum)}`;
    }
  }
  if (typeof value === 'string' && has(rule, 'pattern') && !matches(rule.pattern, value)) {
    return `${where} is ${pythonJson(value)}, which does not match ${rule.pattern}`;
  }
  return null;
}

/** required in order, then every key of the value in its order: properties, else additionalProperties. */
function objectProblem(value, rule, path, root) {
  const prefix = path ? `${path}.` : '';
  for (const key of rule.required ?? []) {
    if (!has(value, key)) return `field \`${prefix}${key}\` is missing`;
  }
  const properties = rule.properties ?? {};
  const extra = has(rule, 'additionalProperties') ? rule.additionalProperties : true;
  for (const [key, item] of Object.entries(value)) {
    let problem = null;
    if (has(properties, key)) problem = problemOf(item, properties[key], prefix + key, root);
    else if (extra === false) problem = `field \`${prefix}${key}\` is not in the schema`;
    else if (isObject(extra)) problem = problemOf(item, extra, prefix + key, root);
    if (problem) return problem;
  }
  return null;
}

export function manifestProblem(manifest, schema) {
  const expected = schema.properties.format.const;
  const found = isObject(manifest) && has(manifest, 'format') ? manifest.format : null;
  if (!pythonEqual(found, expected)) {
    return `field \`format\` is ${pythonJson(found)}: this MaskLens reads ${pythonJson(expected)} `
      + 'only (re-export the model with masklens export)';
  }
  return problemOf(manifest, schema, '', schema);
}

export function validateManifest(manifest, schema) {
  const problem = manifestProblem(manifest, schema);
  if (problem) throw new ManifestError(problem);
}

async function fetchJson(url, what, fetchImpl) {
  let response;
  try {
    response = await fetchImpl(url, { cache: 'no-cache' });
  } catch (error) {
    throw new ManifestError(`Could not download ${what} (${error?.message ?? error}).`);
  }
  if (!response.ok) throw new ManifestError(`Could not download ${what} (HTTP ${response.status}).`);
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ManifestError(`${what[0].toUpperCase()}${what.slice(1)} is not JSON (${error.message}).`);
  }
}

/** The models folder's manifest.json, downloaded with its schema and validated against it. */
export async function readManifest(modelsUrl, { schemaUrl = SCHEMA_URL, fetch: fetchImpl = globalThis.fetch } = {}) {
  const base = modelsUrl.endsWith('/') ? modelsUrl : `${modelsUrl}/`;
  const [manifest, schema] = await Promise.all([
    fetchJson(new URL('manifest.json', base).href, 'the model description manifest.json', fetchImpl),
    fetchJson(schemaUrl, 'the model description\'s schema manifest.schema.json', fetchImpl),
  ]);
  const problem = manifestProblem(manifest, schema);
  if (problem) throw new ManifestError(`The model description manifest.json cannot be used: ${problem}.`);
  return manifest;
}

'use strict';
// Validates deploy/kubernetes/ offline: every object against the Kubernetes API schema (v1.27.1, as
// kubernetes-models 4.3.1 ships it), strictly; broken copies of the Deployment must fail that same
// validation; the ConfigMap's TOML must pass the real `slabd --check-config`; and the manifests
// must agree with the settings slabd reports (ports, grace period, threads).
//
//   node validate_kubernetes.js MODULES_DIR MANIFEST_DIR SLABD WORK_DIR
//
// MODULES_DIR holds the node_modules that test_kubernetes.sh installed from package-lock.json.
const fs = require('fs');
const path = require('path');
const { createRequire } = require('module');
const { execFileSync } = require('child_process');

const [modulesDir, manifestDir, slabd, workDir] = process.argv.slice(2);
const load = createRequire(path.join(path.resolve(modulesDir), 'package.json'));

// The OpenAPI schema lets unknown fields through, but `kubectl apply` rejects them (its default
// --validate=strict), and a misspelt field would otherwise be dropped silently. So, before
// kubernetes-models registers a schema with its validator, close every object schema that lists
// its properties, as kubeconform's -strict does. Maps (additionalProperties given) stay open.
function strict(schema) {
  if (!schema || typeof schema !== 'object') return schema;
  const props = schema.properties || {};
  if (Object.keys(props).length && schema.additionalProperties === undefined &&
      !schema['x-kubernetes-preserve-unknown-fields']) {
    schema.additionalProperties = false;
  }
  Object.values(props).forEach(strict);
  [schema.items, schema.additionalProperties, ...(schema.allOf || []), ...(schema.anyOf || []),
   ...(schema.oneOf || [])].forEach(strict);
  return schema;
}
const validatorPath = load.resolve('@kubernetes-models/validate');
const validator = load('@kubernetes-models/validate');
load.cache[validatorPath].exports = {
  ...validator,
  register: (id, schema) => validator.register(id, strict(schema)),
};
const YAML = load('yaml');

let passed = 0;
let failed = 0;
function check(what, ok, detail = '') {
  if (ok) passed++; else failed++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}${detail ? `: ${detail}` : ''}`);
}

function validate(object) {
  const group = load(`kubernetes-models/${object.apiVersion}`);
  const Model = group[object.kind];
  if (!Model) throw new Error(`no schema for ${object.apiVersion} ${object.kind}`);
  try {
    new Model(object).validate();
  } catch (e) {
    // ajv's own text leaves out which property was not allowed.
    throw new Error((e.errors || []).map((err) => `${err.instancePath} ${err.message}` +
      (err.params.additionalProperty ? ` (${err.params.additionalProperty})` : '')).join('; ') ||
      e.message);
  }
}

// ---- Every object in every file, against the schema.
const objects = {};
for (const file of fs.readdirSync(manifestDir).filter((f) => /\.ya?ml$/.test(f)).sort()) {
  for (const doc of YAML.parseAllDocuments(fs.readFileSync(path.join(manifestDir, file), 'utf8'))) {
    if (doc.contents === null) continue;
    const where = `${file}: ${doc.get('kind')}/${doc.getIn(['metadata', 'name'])}`;
    if (doc.errors.length || doc.warnings.length) {
      check(`${where} parses as YAML`, false, [...doc.errors, ...doc.warnings].join('; '));
      continue;
    }
    const object = doc.toJS();
    try {
      validate(object);
      check(`${where} matches the ${object.apiVersion} ${object.kind} schema`, true);
    } catch (e) {
      check(`${where} matches the ${object.apiVersion} ${object.kind} schema`, false, e.message);
    }
    objects[object.kind] = object;
  }
}
const { Deployment: deployment, Service: service, ConfigMap: configMap } = objects;
check('deploy/kubernetes/ has a Deployment, a Service and a ConfigMap',
      deployment && service && configMap);
if (!(deployment && service && configMap)) process.exit(1);

// ---- Broken copies must fail, or the validation above proves nothing.
const broken = [
  ['an unknown field', 'must NOT have additional properties (imagePullpolicy)',
   (d) => { d.spec.template.spec.containers[0].imagePullpolicy = 'Always'; }],
  ['an unknown metadata field', 'must NOT have additional properties (lables)',
   (d) => { d.metadata.lables = d.metadata.labels; }],
  ['a string for an integer', 'containerPort must be integer',
   (d) => { d.spec.template.spec.containers[0].ports[0].containerPort = '7000'; }],
  ['no selector (required)', "must have required property 'selector'",
   (d) => { delete d.spec.selector; }],
  ['a preStop `sleep` action (not in the 1.27 schema)', 'must NOT have additional properties (sleep)',
   (d) => { d.spec.template.spec.containers[0].lifecycle.preStop = { sleep: { seconds: 5 } }; }],
];
for (const [what, expected, breakIt] of broken) {
  const copy = structuredClone(deployment);
  breakIt(copy);
  let error = '';
  try { validate(copy); } catch (e) { error = e.message; }
  check(`a Deployment with ${what} is rejected`, error.includes(expected),
        error ? `"${error}"` : 'it passed validation');
}

// ---- The ConfigMap's TOML, by the real binary.
const container = deployment.spec.template.spec.containers[0];
const mount = container.volumeMounts.find((m) => {
  const volume = deployment.spec.template.spec.volumes.find((v) => v.name === m.name);
  return volume && volume.configMap && volume.configMap.name === configMap.metadata.name;
});
check('the ConfigMap is mounted where --config points',
      mount && container.args.join(' ') === `--config ${mount.mountPath}/slabd.toml`,
      `args ${container.args.join(' ')}`);
fs.mkdirSync(workDir, { recursive: true });
const tomlPath = path.join(workDir, 'slabd.toml');
fs.writeFileSync(tomlPath, configMap.data['slabd.toml'] || '');
let effective = '';
try {
  effective = execFileSync(slabd, ['--check-config', '--config', tomlPath], {
    encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'],
  });
  check('slabd --check-config accepts the ConfigMap\'s slabd.toml', true);
} catch (e) {
  check('slabd --check-config accepts the ConfigMap\'s slabd.toml', false, `${e.stderr}`.trim());
  process.exit(1);
}

// --check-config prints TOML: "[table]" lines, then "key = value" lines.
const settings = {};
let table = '';
for (const line of effective.split('\n')) {
  const header = line.match(/^\[(\w+)\]$/);
  const entry = line.match(/^(\w+) = "?([^"]*)"?$/);
  if (header) table = header[1];
  else if (entry) settings[`${table}.${entry[1]}`] = entry[2];
}
const seconds = (d) => {
  const [, n, unit] = d.match(/^(\d+)(ms|s|m|h)?$/);
  return n * { ms: 0.001, s: 1, m: 60, h: 3600 }[unit || 's'];
};
const portOf = (endpoint) => Number(endpoint.split(':').pop());
const containerPort = (name) => (container.ports.find((p) => p.name === name) || {}).containerPort;

// ---- The manifests agree with those settings.
check('[server] listen is on all interfaces, on the "data" container port',
      settings['server.listen'] === `0.0.0.0:${containerPort('data')}`, settings['server.listen']);
check('[admin] listen is on all interfaces, on the "admin" container port',
      settings['admin.listen'] === `0.0.0.0:${containerPort('admin')}`, settings['admin.listen']);
const annotations = deployment.spec.template.metadata.annotations || {};
check('Prometheus annotations scrape /metrics on the admin port',
      annotations['prometheus.io/scrape'] === 'true' && annotations['prometheus.io/path'] === '/metrics' &&
      Number(annotations['prometheus.io/port']) === portOf(settings['admin.listen']));
check('[admin] token is empty, so that annotation-based scraping of /metrics works',
      settings['admin.token'] === '');
const probe = (p, route) => p && p.httpGet && p.httpGet.path === route &&
  [containerPort('admin'), 'admin'].includes(p.httpGet.port);
check('liveness probes /healthz and readiness /readyz, on the admin port',
      probe(container.livenessProbe, '/healthz') && probe(container.readinessProbe, '/readyz'));
const preStop = container.lifecycle.preStop.exec.command;
const grace = deployment.spec.template.spec.terminationGracePeriodSeconds;
const needed = Number(preStop[1]) + seconds(settings['timeouts.shutdown_grace']);
check('terminationGracePeriodSeconds exceeds the preStop sleep plus [timeouts] shutdown_grace',
      preStop[0] === '/bin/sleep' && grace > needed, `${grace} s > ${needed} s`);
check('[server] threads equals the CPU limit (0 would count the node\'s cores)',
      String(settings['server.threads']) === String(container.resources.limits.cpu),
      `threads ${settings['server.threads']}, cpu ${container.resources.limits.cpu}`);
const pod = deployment.spec.template.spec.securityContext;
const sc = container.securityContext;
check('non-root with a numeric UID, read-only root, no capabilities, no privilege escalation',
      pod.runAsNonRoot === true && Number.isInteger(pod.runAsUser) && pod.runAsUser > 0 &&
      sc.readOnlyRootFilesystem === true && sc.allowPrivilegeEscalation === false &&
      sc.capabilities.drop.join() === 'ALL');
check('the Service selects the Deployment\'s pods and targets the data port',
      Object.entries(deployment.spec.selector.matchLabels)
        .every(([k, v]) => service.spec.selector[k] === v) &&
      service.spec.ports.every((p) => p.targetPort === 'data' || p.targetPort === containerPort('data')));

console.log(`deploy_kubernetes: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
